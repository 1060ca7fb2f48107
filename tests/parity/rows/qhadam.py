"""Parity rows for :mod:`mlx_optim.optimizers.qhadam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # qhadam (foreach path)
    Row("qhadam", {"learning_rate": 1e-2}),
    Row("qhadam", {"learning_rate": 1e-2, "nus": (0.7, 0.9), "weight_decay": 0.1, "maximize": True}, id="nus-l2"),
    Row(
        "qhadam",
        {
            "learning_rate": 1e-2,
            "nus": (0.5, 1.0),
            "weight_decay": 0.02,
            "weight_decouple": True,
            "fixed_decay": True,
            "betas": (0.8, 0.99),
        },
        id="decoupled-fixed",
    ),
]
