"""Parity rows for :mod:`mlx_optim.optimizers.fadam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # fadam
    Row("fadam", {"learning_rate": 1e-2}),
    Row(
        "fadam",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.0,
            "clip": 0.5,
            "p": 0.25,
            "eps": 1e-3,
            "eps_2": 1e-4,
            "maximize": True,
        },
        id="options-max",
    ),
    Row("fadam", {"learning_rate": 1e-2, "weight_decay": 0.5, "eps": 1e-1, "eps_2": 0.5}, id="scaled-eps"),
]
