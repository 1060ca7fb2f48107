"""Parity rows for :mod:`mlx_optim.optimizers.kate`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # kate
    Row("kate", {"learning_rate": 1e-2}),
    Row(
        "kate",
        {
            "learning_rate": 1e-2,
            "delta": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="delta-l2-max",
    ),
    Row("kate", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
]
