"""Parity rows for :mod:`mlx_optim.optimizers.padam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # padam
    Row("padam", {"learning_rate": 1e-2}),
    Row("padam", {"learning_rate": 1e-2, "partial": 0.5, "weight_decay": 0.1, "betas": (0.8, 0.99)}, id="l2-adam"),
    Row(
        "padam",
        {
            "learning_rate": 1e-2,
            "partial": 0.125,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "maximize": True,
        },
        id="fixed-max",
    ),
]
