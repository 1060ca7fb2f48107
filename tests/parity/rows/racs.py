"""Parity rows for :mod:`mlx_optim.optimizers.racs`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # RACS
    Row("racs", {"learning_rate": 1e-1}),
    Row(
        "racs",
        {
            "learning_rate": 1e-1,
            "beta": 0.8,
            "alpha": 0.1,
            "gamma": 1.5,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="l2-max",
    ),
    Row("racs", {"learning_rate": 1e-1, "weight_decay": 0.1, "fixed_decay": True}, id="fixed-decay"),
]
