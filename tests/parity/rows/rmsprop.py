"""Parity rows for :mod:`mlx_optim.optimizers.rmsprop`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # rmsprop: torch.optim.RMSprop
    Row("rmsprop", {"learning_rate": 1e-2}),
    Row(
        "rmsprop",
        {"learning_rate": 1e-2, "momentum": 0.9, "centered": True, "weight_decay": 0.1, "alpha": 0.9},
        id="centered-momentum",
    ),
]
