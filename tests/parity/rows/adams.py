"""Parity rows for :mod:`mlx_optim.optimizers.adams`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adams (global second-moment statistic)
    Row("adams", {"learning_rate": 1e-2}),
    Row(
        "adams",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "ams_bound": True, "adanorm": True},
        id="l2-ams-adanorm",
    ),
    Row(
        "adams",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "adam_debias": True,
            "maximize": True,
            "betas": (0.8, 0.99),
        },
        id="fixed-debias-max",
    ),
]
