"""Parity rows for :mod:`mlx_optim.optimizers.srmm`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # srmm
    Row("srmm", {"learning_rate": 1e-2}),
    Row("srmm", {"learning_rate": 1e-2, "beta": 0.8, "memory_length": 5, "maximize": True}, id="mem5-max"),
    Row("srmm", {"learning_rate": 1e-2, "memory_length": None}, id="no-memory"),
]
