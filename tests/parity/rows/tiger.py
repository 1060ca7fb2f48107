"""Parity rows for :mod:`mlx_optim.optimizers.tiger`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    Row("tiger", {"learning_rate": 1e-3}),
    Row("tiger", {"learning_rate": 1e-3, "beta": 0.9, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
    Row("tiger", {"learning_rate": 1e-3, "weight_decay": 0.1, "weight_decouple": False, "maximize": True}, id="l2"),
]
