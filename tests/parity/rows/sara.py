"""Parity rows for :mod:`mlx_optim.optimizers.sara`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

from tests.parity.harness import Row, mlx_stepper


# ----------------------------------------------------------------------------- SaRA's nuclear-norm penalty
def sara_rank_runner(row: Row, compiled: bool):
    """SaRA with ``lambda_rank > 0`` on a (70, 66) matrix (the harness's shapes are all too small for it).

    With a single candidate matrix the reference's ``random.choice`` has one outcome, so the comparison is exact.
    """
    rng = np.random.default_rng(3)
    init = {"w": (0.5 * rng.normal(size=(70, 66))).astype(np.float32), "a": rng.normal(size=(7,)).astype(np.float32)}
    target = {k: rng.normal(size=v.shape) for k, v in init.items()}
    noise = [{k: rng.normal(scale=0.5, size=v.shape) for k, v in init.items()} for _ in range(row.steps)]

    def grads_at(params, t):
        s = 3.0 if t < 4 else 0.05
        return {k: (s * (p.astype(np.float64) - target[k] + noise[t][k])).astype(np.float32) for k, p in params.items()}

    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ref = pytorch_optimizer.SaRA(list(tparams.values()), **row.torch_kwargs())
    opt, holder, step = mlx_stepper(row, compiled, init)
    mine, theirs = [], []
    for t in range(row.steps):
        tg = grads_at({k: p.detach().numpy() for k, p in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(tg[k])
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
        step({k: mx.array(g) for k, g in grads_at({k: np.array(v) for k, v in holder["params"].items()}, t).items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, theirs


ROWS = [
    Row("sara", {"learning_rate": 1e-2, "threshold": 0.8}, id="defaults"),
    Row(
        "sara",
        {
            "learning_rate": 5e-2,
            "betas": (0.8, 0.99),
            "threshold": 1.0,
            "progressive_iter": 8,
            "weight_decay": 0.1,
            "ams_bound": True,
            "eps": 1e-6,
        },
        id="progressive-ams",
    ),
    Row(
        "sara",
        {"learning_rate": 5e-2, "threshold": 0.8, "progressive_iter": 6, "weight_decay": 0.0, "maximize": True},
        id="maximize",
    ),
    Row(
        "sara",
        {"learning_rate": 1e-2, "threshold": 0.5, "lambda_rank": 0.5, "progressive_iter": 3, "ams_bound": True},
        runner=sara_rank_runner,
        id="lambda-rank",
    ),
    Row(
        "sara",
        {"learning_rate": 1e-2, "threshold": 0.5, "lambda_rank": 0.5, "maximize": True},
        runner=sara_rank_runner,
        id="lambda-rank-maximize",
    ),
]
