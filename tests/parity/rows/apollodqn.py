"""Parity rows for :mod:`mlx_optim.optimizers.apollodqn`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # defaults: warmup_steps=500, so the learning rate is still tiny after 20 steps; lr=1 makes the steps visible
    Row("apollodqn", {"learning_rate": 1.0}, id="default"),
    Row(
        "apollodqn",
        {
            "learning_rate": 1e-2,
            "warmup_steps": 5,
            "rebound": "belief",
            "weight_decay": 1e-1,
            "weight_decay_type": "decoupled",
            "beta": 0.8,
            "eps": 1e-3,
        },
        id="belief-decoupled",
    ),
    Row(
        "apollodqn",
        {
            "learning_rate": 5e-3,
            "init_lr": None,
            "warmup_steps": 5,
            "weight_decay": 1e-1,
            "weight_decay_type": "stable",
        },
        id="stable-initlr-none",
    ),
    Row(
        "apollodqn",
        {
            "learning_rate": 1e-2,
            "warmup_steps": 0,
            "rebound": "belief",
            "weight_decay": 1e-1,
            "weight_decay_type": "l2",
            "maximize": True,
        },
        id="belief-l2-maximize",
    ),
    Row("apollodqn", {"learning_rate": 1e-2, "warmup_steps": 3, "weight_decay": 1e-1}, id="constant-l2"),
]
