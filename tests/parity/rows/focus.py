"""Parity rows for :mod:`mlx_optim.optimizers.focus`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # focus
    Row("focus", {"learning_rate": 1e-3}),
    Row(
        "focus",
        {"learning_rate": 1e-3, "betas": (0.8, 0.9), "gamma": 0.3, "weight_decay": 0.1, "maximize": True},
        id="options",
    ),
]
