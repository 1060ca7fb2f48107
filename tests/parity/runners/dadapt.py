"""Parity rows for the learning-rate-free optimizers (D-Adaptation family and Prodigy).

``learning_rate`` is D-Adaptation's multiplier of the estimated step. On the harness
problem (loud for 6 steps, then quiet) D grows slowly from ``d0=1e-6`` for AdaGrad,
SGD and Adan, so with ``learning_rate=1`` the parameters move by less than ``atol``
in 20 steps; their rows use ``learning_rate=30`` (or a larger ``d0``) so that every
row moves the parameters by 1e-2 or more. Prodigy's defaults row uses 0.5: at 1.0
the estimate grows ~2.5x per step and the run becomes so sensitive to float32
rounding that the float32 and float64 references differ by 4e-2 after 20 steps.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch

from tests.parity.harness import Row, initial_params, loss_and_grads, mlx_stepper, reference_class

ZERO_STEPS = 2


def _grads(params: dict, t: int) -> dict:
    _, grads = loss_and_grads(params, t)
    return {k: np.zeros_like(g) for k, g in grads.items()} if t < ZERO_STEPS else grads


def zero_start(row: Row, compiled: bool) -> tuple[list, list]:
    """The harness problem, but the first ``ZERO_STEPS`` gradients are all zero.

    Exercises the reference's early returns (zero denominator sum / zero first
    gradient norm): nothing may move and D must stay put until gradients arrive.
    """
    init = initial_params()
    tp = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    topt = reference_class(row)(list(tp.values()), **row.torch_kwargs())
    opt, holder, step = mlx_stepper(row, compiled, init)
    mine, ref = [], []
    for t in range(row.steps):
        grads = _grads({k: p.detach().numpy() for k, p in tp.items()}, t)
        for k, p in tp.items():
            p.grad = torch.from_numpy(grads[k].copy())
        topt.step()
        ref.append({k: p.detach().numpy().copy() for k, p in tp.items()})
        step({k: mx.array(g) for k, g in _grads({k: np.array(v) for k, v in holder["params"].items()}, t).items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, ref
