"""Parity rows for :mod:`mlx_optim.optimizers.pid`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # pid
    Row("pid", {"learning_rate": 1e-2}),
    Row(
        "pid",
        {
            "learning_rate": 1e-3,
            "momentum": 0.9,
            "dampening": 0.1,
            "derivative": 5.0,
            "integral": 2.0,
            "weight_decay": 0.1,
        },
        id="momentum-l2",
    ),
    Row(
        "pid",
        {
            "learning_rate": 1e-3,
            "momentum": 0.5,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "maximize": True,
        },
        id="decoupled-fixed-max",
    ),
]
