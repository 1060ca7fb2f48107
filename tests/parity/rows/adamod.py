"""Parity rows for :mod:`mlx_optim.optimizers.adamod`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adamod
    Row("adamod", {"learning_rate": 1e-2}),
    Row(
        "adamod",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.999, 0.999),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adam_debias": True,
        },
        id="l2-debias",
    ),
    Row("adamod", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "maximize": True}, id="fixed-max"),
]
