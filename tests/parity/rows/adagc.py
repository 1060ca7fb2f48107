"""Parity rows for :mod:`mlx_optim.optimizers.adagc`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # adagc: the default warmup (100) covers all 20 steps; short warmups reach the relative-clipping phase
    Row("adagc", {"learning_rate": 1e-2}),
    Row(
        "adagc",
        {
            "learning_rate": 1e-2,
            "warmup_steps": 5,
            "beta": 0.9,
            "lambda_abs": 2.0,
            "lambda_rel": 1.2,
            "fixed_decay": True,
            "weight_decay": 0.02,
        },
        id="short-warmup-fixed",
    ),
    Row(
        "adagc",
        {
            "learning_rate": 1e-2,
            "warmup_steps": 8,
            "weight_decouple": False,
            "betas": (0.8, 0.99),
            "maximize": True,
            **WD,
        },
        id="l2-max",
    ),
    Row("adagc", {"learning_rate": 1e-2, "warmup_steps": 0, "weight_decay": 0.0, "eps": 1e-6}, id="no-warmup"),
]
