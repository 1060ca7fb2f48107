"""Parity rows for :mod:`mlx_optim.optimizers.asgd`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # ASGD: pytorch_optimizer's adaptive SGD
    Row("asgd", {"learning_rate": 1e-2}),
    Row(
        "asgd",
        {
            "learning_rate": 1e-2,
            "amplifier": 0.1,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "theta": 2.0,
            "dampening": 0.5,
            "eps": 1e-4,
            "maximize": True,
        },
        id="l2-theta-max",
    ),
    Row("asgd", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True}, id="fixed-decay"),
]
