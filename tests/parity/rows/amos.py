"""Parity rows for :mod:`mlx_optim.optimizers.amos`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # amos
    Row("amos", {"learning_rate": 1e-2}),
    Row(
        "amos",
        {
            "learning_rate": 1e-2,
            "momentum": 0.9,
            "extra_l2": 0.01,
            "c_coef": 0.5,
            "d_coef": 0.1,
            "beta": 0.99,
            "eps": 1e-12,
            "maximize": True,
        },
        id="momentum-l2-max",
    ),
]
