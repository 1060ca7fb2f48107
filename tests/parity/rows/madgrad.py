"""Parity rows for :mod:`mlx_optim.optimizers.madgrad`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # madgrad
    Row("madgrad", {"learning_rate": 1e-2}),
    Row(
        "madgrad",
        {"learning_rate": 1e-2, "momentum": 0.0, "weight_decay": 0.1, "maximize": True},
        id="nomomentum-l2-max",
    ),
    Row(
        "madgrad",
        {"learning_rate": 1e-2, "momentum": 0.5, "weight_decay": 0.1, "weight_decouple": True, "eps": 1e-4},
        id="decoupled",
    ),
    Row(
        "madgrad",
        {"learning_rate": 1e-2, "momentum": 0.0, "weight_decay": 0.1, "weight_decouple": True, "eps": 0.0},
        id="nomomentum-decoupled-eps0",
    ),
]
