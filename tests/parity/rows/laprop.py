"""Parity rows for :mod:`mlx_optim.optimizers.laprop`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # laprop
    Row("laprop", {"learning_rate": 1e-2}),
    Row(
        "laprop",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.9),
            "centered": True,
            "steps_before_using_centered": 5,
            "ams_bound": True,
            "weight_decay": 0.1,
            "cautious": True,
        },
        id="centered-ams-decoupled-cautious",
    ),
    Row(
        "laprop",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.1,
            "fixed_decay": True,
            "eps": 1e-8,
            "maximize": True,
        },
        id="fixed-max",
    ),
    Row("laprop", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False}, id="l2-noop"),
]
