"""Parity rows for :mod:`mlx_optim.optimizers.qhm`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # qhm
    Row("qhm", {"learning_rate": 1e-2}),
    Row("qhm", {"learning_rate": 1e-2, "momentum": 0.9, "nu": 0.7, "weight_decay": 0.1}, id="nu-l2"),
    Row(
        "qhm",
        {
            "learning_rate": 1e-2,
            "momentum": 0.5,
            "nu": 0.5,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "maximize": True,
        },
        id="decoupled-fixed-max",
    ),
]
