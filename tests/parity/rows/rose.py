"""Parity rows for :mod:`mlx_optim.optimizers.rose`."""

from __future__ import annotations

import torch
from pytorch_optimizer import ROSE

from mlx_optim.check import compare as check_compare
from mlx_optim.check import programs
from tests.parity.harness import Portable, Row, case_of


def rose_with_initial_lr(params, **kwargs):
    """ROSE with ``initial_lr`` set on its group, as a torch LR scheduler does (needed by ``wd_schedule=True``)."""
    opt = ROSE(params, **kwargs)
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    return opt


def _rose_bf16_reference(row: Row):
    """bf16 parameters at 1.5 (spacing 2^-7) and steps of lr/2 = 1e-3 per step, far below half a spacing.

    Gradient columns alternate +1 / -1 (zero row means, every row range 2), so ROSE moves the +1 columns
    down and the -1 columns up by 1e-3 per step. With stochastic rounding the column-group means follow
    that in expectation on both sides; round-to-nearest would not move at all. Returns per-step
    ``{"down": mean of the +1 columns, "up": mean of the -1 columns}`` (the MLX side:
    ``mlx_optim.check.programs.rose_bf16``).
    """
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.full(programs.ROSE_SHAPE, 1.5, dtype=torch.bfloat16))
    ref_opt = ROSE([p], **row.torch_kwargs())
    grad = programs.rose_bf16_grad()
    ref = []
    for _ in range(row.steps):
        p.grad = torch.from_numpy(grad).to(torch.bfloat16)
        ref_opt.step()
        ref.append(programs.rose_means(p.detach().float().numpy()))
    return ref


rose_bf16_runner = Portable("rose_bf16", _rose_bf16_reference, compare="rose_bf16")


def rose_bf16_compare(mine, ref, row: Row) -> None:
    """The means within ``atol`` (the spread of a mean of 8192 stochastically rounded values is ~3e-5) of the
    exact drift ``1.5 -+ (t + 1) lr / 2`` and of the reference's (``mlx_optim.check.compare.rose_bf16``)."""
    worst, msg = check_compare.rose_bf16(mine, ref, case_of(row))
    assert worst <= 1, f"{row.label}: {msg} ({worst:.3g} x atol)"


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
