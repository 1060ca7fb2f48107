"""Parity rows for :mod:`mlx_optim.optimizers.signsgd`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # signsgd
    Row("signsgd", {"learning_rate": 1e-3}),
    Row(
        "signsgd",
        {"learning_rate": 1e-3, "momentum": 0.0, "weight_decay": 0.1, "weight_decouple": False, "maximize": True},
        id="sign-l2-max",
    ),
    Row("signsgd", {"learning_rate": 1e-3, "momentum": 0.5, "weight_decay": 0.1}, id="decoupled"),
]
