"""Parity rows for :mod:`mlx_optim.optimizers.yogi`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # yogi
    Row("yogi", {"learning_rate": 1e-2}),
    Row(
        "yogi",
        {
            "learning_rate": 1e-2,
            "initial_accumulator": 1e-2,
            "eps": 1e-6,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adam_debias": True,
        },
        id="l2-debias",
    ),
    Row("yogi", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "maximize": True}, id="fixed-max"),
]
