"""Parity rows for :mod:`mlx_optim.optimizers.adam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adam / adamw: torch.optim
    Row("adam", {"learning_rate": 1e-2}),
    Row(
        "adam",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True},
        id="l2-ams",
    ),
    Row(
        "adam",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
        id="decoupled-max",
    ),
    Row("adamw", {"learning_rate": 1e-2}),
    Row("adamw", {"learning_rate": 1e-2, "weight_decay": 0.2, "amsgrad": True, "betas": (0.85, 0.95)}, id="ams"),
]
