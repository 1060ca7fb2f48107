"""Parity rows for :mod:`mlx_optim.optimizers.rose`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch
from pytorch_optimizer import ROSE

import mlx_optim
from tests.parity.harness import Row


def rose_with_initial_lr(params, **kwargs):
    """ROSE with ``initial_lr`` set on its group, as a torch LR scheduler does (needed by ``wd_schedule=True``)."""
    opt = ROSE(params, **kwargs)
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    return opt


def rose_bf16_runner(row: Row, compiled: bool):
    """bf16 parameters at 1.5 (spacing 2^-7) and steps of lr/2 = 1e-3 per step, far below half a spacing.

    Gradient columns alternate +1 / -1 (zero row means, every row range 2), so ROSE moves the +1 columns
    down and the -1 columns up by 1e-3 per step. With stochastic rounding the column-group means follow
    that in expectation on both sides; round-to-nearest would not move at all. Returns per-step
    ``{"down": mean of the +1 columns, "up": mean of the -1 columns}`` for MLX and torch.
    """
    shape, steps = (64, 256), row.steps
    grad = np.where(np.arange(shape[1]) % 2 == 0, 1.0, -1.0)[None, :].repeat(shape[0], 0).astype(np.float32)

    def means(x: np.ndarray) -> dict:
        return {"down": np.float64(x[:, 0::2].mean()), "up": np.float64(x[:, 1::2].mean())}

    opt = mlx_optim.load_optimizer("rose")(**row.kwargs)
    holder = {"p": mx.full(shape, 1.5, mx.bfloat16)}
    g = {"p": mx.array(grad).astype(mx.bfloat16)}
    opt.init(holder)

    def step(g):
        holder["p"] = opt.apply_gradients(g, holder)["p"]

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    mine = []
    for _ in range(steps):
        step(g)
        mx.eval(holder, opt.state)
        mine.append(means(np.array(holder["p"].astype(mx.float32))))

    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.full(shape, 1.5, dtype=torch.bfloat16))
    ref_opt = ROSE([p], **row.torch_kwargs())
    ref = []
    for _ in range(steps):
        p.grad = torch.from_numpy(grad).to(torch.bfloat16)
        ref_opt.step()
        ref.append(means(p.detach().float().numpy()))
    return mine, ref


def rose_bf16_compare(mine, ref, row: Row) -> None:
    lr = row.kwargs["learning_rate"]
    for t, (a, b) in enumerate(zip(mine, ref)):
        drift = (t + 1) * lr / 2
        for k, sign in (("down", -1.0), ("up", 1.0)):
            # expected mean 1.5 -+ drift; the spread of a mean of 8192 stochastically rounded values is ~3e-5
            assert abs(a[k] - (1.5 + sign * drift)) < row.atol, (t, k, a[k], b[k])
            assert abs(a[k] - b[k]) < row.atol, (t, k, a[k], b[k])
    assert len(mine) == len(ref) == row.steps


ROWS = [
    # rose (the reference computes in float64 by default, we in float32)
    Row("rose", {"learning_rate": 1e-2}),
    Row("rose", {"learning_rate": 1e-2}, ref_kwargs={"compute_dtype": torch.float32}, id="fp32"),
    Row(
        "rose",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "wd_schedule": 2e-2,
            "centralize": False,
            "maximize": True,
        },
        id="decoupled-sched-nocenter-max",
    ),
    Row(
        "rose",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True, "stabilize": False},
        id="fixed-nostab",
    ),
    Row(
        "rose",
        {"learning_rate": 1e-2, "weight_decay": 0.2, "weight_decouple": True, "wd_schedule": True},
        ref=rose_with_initial_lr,
        id="sched-initial",
    ),
    Row("rose", {"learning_rate": 1e-2, "weight_decay": 0.0}, id="nodecay"),
    Row(
        "rose",
        {"learning_rate": 2e-3, "weight_decay": 0.0},
        runner=rose_bf16_runner,
        compare=rose_bf16_compare,
        atol=3e-4,
        steps=10,
        note="stochastic rounding of bf16 parameters: only the means can be compared (spread ~3e-5)",
        id="bf16-sr-stats",
    ),
]
