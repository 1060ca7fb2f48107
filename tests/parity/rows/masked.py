"""Parity rows for Magma (a wrapper, :mod:`mlx_optim.wrappers.magma`) and DeMo (:mod:`mlx_optim.optimizers.masked`).

Magma draws one Bernoulli mask per tensor and step. MLX and torch draw different random numbers, so the rows
with ``0 < mask_prob < 1`` use :func:`magma_runner`: it runs the MLX side, reads which tensors moved at each step
(a masked tensor keeps its parameter bit for bit: ``lerp`` with weight 1 returns the old value), checks that the
kept fraction is plausible for ``mask_prob``, and replays exactly those draws into the reference by patching
``torch.bernoulli`` (called once per tensor, in parameter order, per step). Everything else (the alignment EMA,
the moment lookup, the dense inner step, the masked interpolation) is then compared at the default tolerance.
Rows with ``mask_prob=1`` are deterministic and use the plain harness.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import torch

import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import SHAPES, Row, initial_params, mlx_stepper, run_mlx, run_reference, scale

# ---------------------------------------------------------------------------- Magma


def _torch_inner_kwargs(lr, optimizer_kwargs) -> dict:
    kw = {
        ("lr" if k == "learning_rate" else k): (tuple(v) if isinstance(v, list) else v)
        for k, v in (optimizer_kwargs or {}).items()
    }
    if lr is not None:
        kw["lr"] = lr
    return kw


def torch_magma(params, optimizer, lr=None, optimizer_kwargs=None, exclude=None, **kwargs):
    """``pytorch_optimizer.Magma`` around the torch optimizer named ``optimizer``; ``exclude`` names leaves."""
    import pytorch_optimizer

    params = list(params)
    inner = pytorch_optimizer.load_optimizer(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
    names = list(SHAPES)
    excluded = {params[names.index(n)] for n in (exclude or ())}
    return pytorch_optimizer.Magma(inner, exclude=excluded, **kwargs)


def magma_runner(row: Row, compiled: bool):
    mine = run_mlx(row, compiled)
    excluded = set(row.kwargs.get("exclude") or ())
    prev = initial_params()
    draws = []
    for step in mine:
        for k in SHAPES:
            if k not in excluded:
                draws.append(float(not np.array_equal(step[k], prev[k])))
        prev = step
    p = row.kwargs.get("mask_prob", 0.5)
    kept = float(np.mean(draws))
    assert abs(kept - p) < 0.2, f"{row.label}: kept fraction {kept:.2f} implausible for mask_prob={p}"
    it = iter(draws)

    def bernoulli(prob, *args, **kwargs):
        return torch.tensor(next(it), dtype=prob.dtype)

    with mock.patch.object(torch, "bernoulli", side_effect=bernoulli):
        ref = run_reference(row)
    assert next(it, None) is None, f"{row.label}: the reference drew fewer masks than MLX"
    return mine, ref


REPLAY = "random masks: MLX's draws replayed into torch.bernoulli (default tolerance); kept fraction checked"

MAGMA_ROWS = [
    # defaults around AdamW (the reference's "params" form), auto moment = AdamW's exp_avg
    Row(
        "magma",
        {"optimizer": "adamw", "learning_rate": 1e-2},
        ref=torch_magma,
        runner=magma_runner,
        steps=40,
        note=REPLAY,
        id="default",
    ),
    # deterministic: every update kept, SGD's momentum_buffer as the moment, other tau / alignment_ema
    Row(
        "magma",
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "optimizer_kwargs": {"momentum": 0.9},
            "mask_prob": 1.0,
            "tau": 0.5,
            "alignment_ema": 0.6,
        },
        ref=torch_magma,
        id="sgd-keep-all",
    ),
    # Magma's own momentum (moment_key=None), an excluded leaf, another mask_prob
    Row(
        "magma",
        {
            "optimizer": "adamw",
            "learning_rate": 1e-2,
            "optimizer_kwargs": {"weight_decay": 0.1, "betas": (0.8, 0.95)},
            "mask_prob": 0.7,
            "tau": 1.0,
            "momentum_beta": 0.7,
            "alignment_ema": 0.8,
            "moment_key": None,
            "exclude": ["b"],
        },
        ref=torch_magma,
        runner=magma_runner,
        steps=40,
        note=REPLAY,
        id="fallback-exclude",
    ),
    # a named moment key; inner maximize (Magma's cosine uses the raw gradient)
    Row(
        "magma",
        {
            "optimizer": "adam",
            "learning_rate": 1e-2,
            "optimizer_kwargs": {"maximize": True},
            "mask_prob": 1.0,
            "moment_key": "exp_avg_sq",
            "tau": 3.0,
        },
        ref=torch_magma,
        id="named-key-maximize",
    ),
    # SGD without momentum has no first moment: "auto" falls back to Magma's own EMA
    Row(
        "magma",
        {"optimizer": "sgd", "learning_rate": 0.05, "mask_prob": 0.3, "momentum_beta": 0.5},
        ref=torch_magma,
        runner=magma_runner,
        steps=40,
        note=REPLAY,
        id="auto-fallback",
    ),
]


# ---------------------------------------------------------------------------- DeMo
# The reference needs einops (not installed here) for six rearrange patterns that are all plain reshapes, and
# torch.distributed for its world size (a one-process gloo group, as for DistributedMuon). Its parameters must
# be 1-D or 2-D (the harness's (2, 3, 4) tensor fails in the reference too), so DeMo rows run their own problem:
# the harness's gradient on DEMO_SHAPES, sizes chosen so that non-default chunks split into several blocks.

DEMO_SHAPES = {"a": (7,), "b": (5, 6), "c": (8, 12), "d": (16,)}
# With one kept coefficient per block, a block size with an odd factor (3, 5, 6, 7, ...) has DCT basis vectors
# with exact zeros (cos(pi/2)), where the decoded value is rounding noise whose sign differs between torch's FFT
# and our matmul (a 2 lr flip, measured); power-of-two blocks have none, so that row uses these shapes.
POW2_SHAPES = {"a": (8,), "b": (4, 16), "c": (16, 8), "d": (32,)}


def _rearrange(x, pattern, **sizes):
    if pattern == "(y h) (x w) -> y h x w":
        if x.ndim != 2:
            raise ValueError(f"rearrange {pattern!r}: expected a 2-D tensor, got {tuple(x.shape)}")
        return x.reshape(x.shape[0] // sizes["h"], sizes["h"], x.shape[1] // sizes["w"], sizes["w"])
    if pattern == "(x w) -> x w":
        return x.reshape(-1, sizes["w"])
    if pattern == "y h x w -> (y h) (x w)":
        return x.reshape(x.shape[0] * x.shape[1], x.shape[2] * x.shape[3])
    if pattern == "x w -> (x w)":
        return x.reshape(-1)
    if pattern == "y x h w -> y x (h w)":
        return x.reshape(x.shape[0], x.shape[1], -1)
    if pattern == "y x (h w) -> y x h w":
        return x.reshape(x.shape[0], x.shape[1], sizes["h"], -1)
    raise NotImplementedError(pattern)


def _demo_problem(steps: int, shapes: dict):
    rng = np.random.default_rng(3)
    init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    target = {k: rng.normal(size=s) for k, s in shapes.items()}
    noise = [{k: rng.normal(scale=0.5, size=s) for k, s in shapes.items()} for _ in range(steps)]

    def grads(params, t):
        s = scale(t)
        return {
            k: (s * ((p.astype(np.float64) - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(np.float32)
            for k, p in params.items()
        }

    return init, grads


def demo_runner(row: Row, compiled: bool):
    import mlx.core as mx
    import pytorch_optimizer
    from pytorch_optimizer.optimizer import demo as demo_module

    from tests.parity.rows.muon import _single_process_group

    init, grads = _demo_problem(row.steps, POW2_SHAPES if row.id.startswith("pow2") else DEMO_SHAPES)

    opt, holder, step = mlx_stepper(row, compiled, init)
    mine = []
    for t in range(row.steps):
        step({k: mx.array(v) for k, v in grads({k: np.array(p) for k, p in holder["params"].items()}, t).items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})

    _single_process_group()
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    with mock.patch.multiple(demo_module, HAS_EINOPS=True, rearrange=_rearrange, create=True):
        ref_opt = pytorch_optimizer.DeMo(list(params.values()), **row.torch_kwargs())
        ref = []
        for t in range(row.steps):
            for k, v in grads({k: p.detach().numpy() for k, p in params.items()}, t).items():
                params[k].grad = torch.from_numpy(v)
            ref_opt.step()
            ref.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return mine, ref


DEMO_ROWS = [
    Row("demo", {"learning_rate": 1e-2}, runner=demo_runner, id="default"),
    # several blocks per tensor (chunk 4: 8 -> 4, 12 -> 4, 16 -> 4, 6 -> 3, 5 and 7 -> 1), 2 of up to 16 kept
    Row(
        "demo",
        {
            "learning_rate": 1e-2,
            "compression_decay": 0.9,
            "compression_top_k": 2,
            "compression_chunk": 4,
            "weight_decay": 0.1,
            "maximize": True,
        },
        runner=demo_runner,
        id="chunked-wd-max",
    ),
    Row(
        "demo",
        {"learning_rate": 1e-2, "compression_decay": 0.0, "compression_top_k": 1, "compression_chunk": 4},
        runner=demo_runner,
        id="pow2-top1-nodecay",
    ),
]

ROWS = [*MAGMA_ROWS, *DEMO_ROWS]
