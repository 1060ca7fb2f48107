"""Parity rows for :mod:`mlx_optim.optimizers.sara`."""

from __future__ import annotations

import pytorch_optimizer
import torch

from mlx_optim.check import problems as check_problems
from tests.parity.harness import Portable, Row, torch_params


# ----------------------------------------------------------------------------- SaRA's nuclear-norm penalty
def _sara_rank_reference(row: Row):
    """SaRA with ``lambda_rank > 0`` on a (70, 66) matrix (``mlx_optim.check.problems.sara``: the harness's shapes
    are all too small for it).

    With a single candidate matrix the reference's ``random.choice`` has one outcome, so the comparison is exact.
    """
    problem = check_problems.sara(row.steps)
    tparams = torch_params(problem.init)
    ref = pytorch_optimizer.SaRA(list(tparams.values()), **row.torch_kwargs())
    theirs = []
    for t in range(row.steps):
        for k, g in problem.grads({k: p.detach().numpy() for k, p in tparams.items()}, t).items():
            tparams[k].grad = torch.from_numpy(g)
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
    return theirs


sara_rank_runner = Portable("standard", _sara_rank_reference, {"with_loss": False, "problem": {"kind": "sara"}})


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
