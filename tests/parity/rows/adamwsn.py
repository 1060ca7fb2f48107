"""Parity rows for :mod:`mlx_optim.optimizers.adamwsn`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adamwsn (foreach path)
    Row("adamwsn", {"learning_rate": 1e-2}),
    Row("adamwsn", {"learning_rate": 1e-2, "sn": True, "weight_decay": 0.1}, id="sn"),
    Row(
        "adamwsn",
        {
            "learning_rate": 1e-2,
            "sn": True,
            "subset_size": 3,
            "fixed_decay": True,
            "weight_decay": 0.02,
            "maximize": True,
        },
        id="sn-fixed-max",
    ),
    Row("adamwsn", {"learning_rate": 1e-2, "weight_decouple": False, "weight_decay": 0.1}, id="l2-noop"),
]
