"""Parity rows for :mod:`mlx_optim.optimizers.lars`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # lars
    Row("lars", {"learning_rate": 1e-1}),
    Row(
        "lars",
        {"learning_rate": 1.0, "weight_decay": 0.1, "momentum": 0.9, "dampening": 0.1, "trust_coefficient": 0.01},
        id="wd-damp",
    ),
    Row(
        "lars",
        {"learning_rate": 1.0, "weight_decay": 0.1, "nesterov": True, "trust_coefficient": 0.02, "maximize": True},
        id="nesterov-max",
    ),
    Row("lars", {"learning_rate": 1e-1, "momentum": 0.0, "weight_decay": 0.1}, id="no-momentum"),
]
