"""Parity rows for :mod:`mlx_optim.optimizers.aggmo`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # aggmo
    Row("aggmo", {"learning_rate": 1e-2}),
    Row("aggmo", {"learning_rate": 1e-2, "betas": (0.5, 0.9, 0.99, 0.3), "weight_decay": 0.1}, id="4betas-l2"),
    Row(
        "aggmo",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True, "maximize": True},
        id="decoupled-fixed-max",
    ),
]
