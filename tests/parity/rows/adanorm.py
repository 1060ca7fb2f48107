"""Parity rows for :mod:`mlx_optim.optimizers.adanorm`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adanorm
    Row("adanorm", {"learning_rate": 1e-2}),
    Row(
        "adanorm",
        {
            "learning_rate": 1e-2,
            "r": 0.8,
            "ams_bound": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adam_debias": True,
        },
        id="ams-l2-debias",
    ),
    Row("adanorm", {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "maximize": True}, id="fixed-max"),
]
