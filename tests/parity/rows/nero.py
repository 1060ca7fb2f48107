"""Parity rows for :mod:`mlx_optim.optimizers.nero`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # nero
    Row("nero", {"learning_rate": 1e-2}),
    Row(
        "nero", {"learning_rate": 1e-2, "beta": 0.9, "constraints": False, "eps": 1e-6, "maximize": True}, id="free-max"
    ),
]
