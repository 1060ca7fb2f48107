"""The optimizer contract on this device: compiled == eager, exact resume from safetensors, bf16 parameters.

Each registered optimizer (with the keywords of its first stored parity row) trains a small MLP with a nested
parameter tree (with a LoRA adapter for the optimizers that update only LoRA factor pairs) through
``opt.step_with(model, loss_and_grad, x, y)``, as ``tests/test_contract.py`` does on the CI's CPUs:

* ``compiled``: 10 steps with the whole step under ``mx.compile`` match 10 eager steps (losses and parameters
  within ``rtol=1e-5, atol=1e-6``; skipped for optimizers whose update is not compilable, e.g. L-BFGS);
* ``resume``: 3 steps, optimizer state and parameters saved to safetensors and loaded into a new optimizer and
  model, 3 more steps: bit for bit the parameters of 6 uninterrupted steps;
* ``bf16``: 10 steps on bfloat16 parameters: finite losses and parameters, parameters still bf16.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim

__all__ = ["CHECKS", "run_contract"]

CHECKS = ("compiled", "resume", "bf16")
RTOL, ATOL = 1e-5, 1e-6


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.blocks = [nn.Linear(8, 8), nn.Linear(8, 3)]

    def __call__(self, x):
        h = mx.tanh(self.inp(x))
        h = mx.tanh(self.blocks[0](h))
        return self.blocks[1](h)


class LoRANet(Net):
    """``Net`` whose middle layer carries a LoRA adapter (PEFT layout: ``lora_a`` (r, in), ``lora_b`` (out, r)), for
    optimizers that update only LoRA factor pairs (LoRARite)."""

    def __init__(self, rank: int = 2):
        super().__init__()
        self.adapter = {"lora_a": 0.3 * mx.random.normal((rank, 8)), "lora_b": 0.3 * mx.random.normal((8, rank))}

    def __call__(self, x):
        h = mx.tanh(self.inp(x))
        h = self.blocks[0](h) + (h @ self.adapter["lora_a"].T) @ self.adapter["lora_b"].T
        return self.blocks[1](mx.tanh(h))


NEEDS_LORA = {"lorarite"}
"""Optimizers that need a model with LoRA factor pairs (they raise ValueError on a tree without any)."""


def make_model(dtype=mx.float32, name: str | None = None) -> Net:
    mx.random.seed(0)
    model = LoRANet() if name in NEEDS_LORA else Net()
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    return model


def batches(n: int):
    rng = np.random.default_rng(0)
    for _ in range(n):
        x = rng.normal(size=(16, 4)).astype(np.float32)
        y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2], np.cos(x[:, 3])], axis=1).astype(np.float32)
        yield mx.array(x), mx.array(y)


def loss_fn(model, x, y):
    return mx.mean(mx.square(model(x).astype(mx.float32) - y))


def train(model, opt, data, compiled: bool = False) -> list[float]:
    lg = mlx_optim.value_and_grad(model, loss_fn, logits_fn=lambda m, x, y: m(x))

    def step(x, y):
        return opt.step_with(model, lg, x, y)

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    losses = []
    for x, y in data:
        loss = step(x, y)
        mx.eval(model.parameters(), opt.state, loss)
        losses.append(loss.item())
    return losses


def params_np(model) -> dict[str, np.ndarray]:
    return {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.parameters())}


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / (ATOL + RTOL |b|)`` (inf on NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        r = np.where(a == b, 0.0, np.abs(a - b) / (ATOL + RTOL * np.abs(b)))
    r = np.where(np.isnan(r), np.inf, r)
    return float(r.max()) if r.size else 0.0


def compiled_matches_eager(name: str, kwargs: dict) -> tuple[float, str]:
    cls = mlx_optim.load_optimizer(name)
    runs = []
    for compiled in (False, True):
        model, opt = make_model(name=name), cls(**kwargs)
        losses = train(model, opt, batches(10), compiled=compiled)
        runs.append((losses, params_np(model)))
    (le, pe), (lc, pc) = runs
    worst, msg = _close(lc, le), "losses"
    for k in pe:
        r = _close(pc[k], pe[k])
        if r > worst:
            worst, msg = r, k
    return worst, msg


def resume_is_exact(name: str, kwargs: dict) -> tuple[float, str]:
    cls = mlx_optim.load_optimizer(name)
    model, opt = make_model(name=name), cls(**kwargs)
    train(model, opt, batches(6))
    expected = params_np(model)
    model, opt = make_model(name=name), cls(**kwargs)
    data = list(batches(6))
    train(model, opt, data[:3])
    with tempfile.TemporaryDirectory() as d:
        mx.save_safetensors(str(Path(d) / "opt.safetensors"), dict(tree_flatten(opt.state)))
        mx.save_safetensors(str(Path(d) / "model.safetensors"), dict(tree_flatten(model.parameters())))
        model2, opt2 = make_model(name=name), cls(**kwargs)
        model2.load_weights(str(Path(d) / "model.safetensors"))
        opt2.state = tree_unflatten(list(mx.load(str(Path(d) / "opt.safetensors")).items()))
    train(model2, opt2, data[3:])
    got = params_np(model2)
    for k in expected:
        if not np.array_equal(got[k], expected[k]):
            d = float(np.max(np.abs(got[k] - expected[k])))
            return float("inf"), f"{k} after resume differs by {d:.3g} (must be exact)"
    return 0.0, ""


def bf16_finite(name: str, kwargs: dict) -> tuple[float, str]:
    model, opt = make_model(mx.bfloat16, name), mlx_optim.load_optimizer(name)(**kwargs)
    losses = train(model, opt, batches(10))
    if not all(math.isfinite(v) for v in losses):
        return float("inf"), f"losses {losses}"
    for k, v in tree_flatten(model.parameters()):
        if v.dtype != mx.bfloat16:
            return float("inf"), f"{k} became {v.dtype}"
        if not bool(mx.all(mx.isfinite(v.astype(mx.float32)))):
            return float("inf"), f"{k} not finite"
    return 0.0, ""


_FUNCS = {"compiled": compiled_matches_eager, "resume": resume_is_exact, "bf16": bf16_finite}


def run_contract(name: str, kwargs: dict, check: str) -> tuple[str, float, str]:
    """``(verdict, ratio, detail)`` of one contract check (``"skip"`` for ``compiled`` on a non-compilable
    optimizer)."""
    if check == "compiled" and not mlx_optim.load_optimizer(name).compilable:
        return "skip", 0.0, "the update is not compilable (documented)"
    ratio, detail = _FUNCS[check](name, kwargs)
    return ("pass" if ratio <= 1.0 else "FAIL"), ratio, detail
