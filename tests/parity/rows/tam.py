"""Parity rows for :mod:`mlx_optim.optimizers.tam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # tam
    Row("tam", {"learning_rate": 1e-2}),
    Row(
        "tam",
        {
            "learning_rate": 1e-2,
            "momentum": 0.5,
            "decay_rate": 0.5,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "eps": 1e-4,
            "maximize": True,
        },
        id="fixed-max",
    ),
    Row("tam", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False}, id="l2"),
]
