"""Parity rows for :mod:`mlx_optim.optimizers.accsgd`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # accsgd
    Row("accsgd", {"learning_rate": 1e-2}),
    Row(
        "accsgd",
        {"learning_rate": 1e-2, "kappa": 500.0, "xi": 5.0, "constant": 0.5, "weight_decay": 0.1, "maximize": True},
        id="options",
    ),
]
