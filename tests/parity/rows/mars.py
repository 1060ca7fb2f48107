"""Parity rows for :mod:`mlx_optim.optimizers.mars`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # mars
    Row("mars", {"learning_rate": 1e-2}),
    Row(
        "mars",
        {
            "learning_rate": 1e-2,
            "mars_type": "lion",
            "cautious": True,
            "weight_decay": 0.1,
            "weight_decay_1d": 0.2,
            "lr_1d": 1e-2,
            "maximize": True,
        },
        id="lion-cautious",
    ),
    Row(
        "mars",
        {
            "learning_rate": 1e-2,
            "optimize_1d": True,
            "ams_bound": True,
            "weight_decouple": False,
            "weight_decay": 0.1,
            "gamma": 0.1,
        },
        id="1d-ams-l2",
    ),
    Row(
        "mars",
        {
            "learning_rate": 1e-2,
            "ams_bound": True,
            "cautious": True,
            "weight_decay_1d": 0.1,
            "betas_1d": (0.8, 0.9),
            "fixed_decay": True,
            "weight_decay": 0.02,
        },
        id="ams-cautious-fixed",
    ),
    Row(
        "mars", {"learning_rate": 1e-2, "mars_type": "shampoo", "weight_decay": 0.1, "optimize_1d": True}, id="shampoo"
    ),
]
