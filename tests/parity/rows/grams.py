"""Parity rows for :mod:`mlx_optim.optimizers.grams`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # grams
    Row("grams", {"learning_rate": 1e-2}),
    Row(
        "grams",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.1, "eps": 1e-8, "maximize": True},
        id="decoupled-max",
    ),
    Row("grams", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False}, id="l2-noop"),
]
