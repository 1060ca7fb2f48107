"""Parity rows for :mod:`mlx_optim.optimizers.splus`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # splus
    Row("splus", {"learning_rate": 1e-1}),
    Row(
        "splus",
        {
            "learning_rate": 1e-1,
            "betas": (0.8, 0.9),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "inverse_steps": 3,
            "nonstandard_constant": 1e-2,
            "ema_rate": 0.9,
            "maximize": True,
        },
        id="l2-inv3-max",
    ),
    Row(
        "splus",
        {"learning_rate": 1e-1, "weight_decay": 0.1, "fixed_decay": True, "inverse_steps": 4, "max_dim": 6},
        id="fixed-maxdim",
    ),
]
