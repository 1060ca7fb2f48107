"""Parity rows for :mod:`mlx_optim.optimizers.adadelta`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    Row("adadelta", {"learning_rate": 1.0}),
    Row("adadelta", {"learning_rate": 0.5, "rho": 0.8, "weight_decay": 0.1, "eps": 1e-4}, id="l2"),
    Row(
        "adadelta",
        {"learning_rate": 0.5, "weight_decay": 0.1, "weight_decouple": True, "maximize": True},
        id="decoupled-max",
    ),
]
