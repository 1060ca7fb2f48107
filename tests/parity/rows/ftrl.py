"""Parity rows for :mod:`mlx_optim.optimizers.ftrl`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # ftrl
    Row("ftrl", {"learning_rate": 1e-2}),
    Row(
        "ftrl",
        {"learning_rate": 5e-2, "lr_power": -0.3, "beta": 0.1, "lambda_1": 0.05, "lambda_2": 0.1, "maximize": True},
        id="l1-l2-max",
    ),
    Row("ftrl", {"learning_rate": 5e-2, "lr_power": 0.0, "lambda_1": 0.5}, id="power0-l1"),
]
