"""Parity rows for :mod:`mlx_optim.optimizers.diffgrad`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # diffgrad
    Row("diffgrad", {"learning_rate": 1e-2}),
    Row(
        "diffgrad",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "ams_bound": True,
            "adanorm": True,
        },
        id="rectify-sgd-l2-ams-adanorm",
    ),
    Row(
        "diffgrad",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": False,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.9),
            "adam_debias": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "maximize": True,
        },
        id="rectify-skip-debias-fixed-max",
    ),
    Row(
        "diffgrad",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.9),
            "weight_decay": 0.1,
            "ams_bound": True,
            "adanorm": True,
            "adanorm_r": 0.9,
            "eps": 1e-6,
        },
        id="ams-adanorm-r",
    ),
]
