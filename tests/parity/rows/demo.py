"""Parity rows for :mod:`mlx_optim.optimizers.demo`."""

from __future__ import annotations

from unittest import mock

import numpy as np
import torch

import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Row, mlx_stepper, scale

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

    from tests.parity.runners.muon import _single_process_group

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


ROWS = [
    *DEMO_ROWS,
]
