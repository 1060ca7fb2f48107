"""Parity rows for :mod:`mlx_optim.optimizers.adabelief`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adabelief
    Row("adabelief", {"learning_rate": 1e-2}),
    Row(
        "adabelief",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "ams_bound": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adanorm": True,
            "adanorm_r": 0.9,
        },
        id="rectify-ams-l2-adanorm",
    ),
    Row(
        "adabelief",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": False,
            "n_sma_threshold": 6,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "adam_debias": True,
            "eps": 1e-8,
            "betas": (0.8, 0.99),
            "maximize": True,
        },
        id="rectify-nosgd-fixed-debias-max",
    ),
]
