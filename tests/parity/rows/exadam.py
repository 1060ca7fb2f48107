"""Parity rows for :mod:`mlx_optim.optimizers.exadam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # exadam
    Row("exadam", {"learning_rate": 1e-2}),
    Row(
        "exadam",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="l2-max",
    ),
    Row("exadam", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
]
