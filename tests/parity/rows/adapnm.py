"""Parity rows for :mod:`mlx_optim.optimizers.adapnm`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adapnm
    Row("adapnm", {"learning_rate": 1e-2}),
    Row(
        "adapnm",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.99, 0.5),
            "ams_bound": False,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adanorm": True,
        },
        id="noams-l2-adanorm",
    ),
    Row(
        "adapnm",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "adam_debias": True, "maximize": True},
        id="fixed-debias-max",
    ),
]
