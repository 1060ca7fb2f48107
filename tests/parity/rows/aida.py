"""Parity rows for :mod:`mlx_optim.optimizers.aida`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # aida
    Row("aida", {"learning_rate": 1e-2}),
    Row("aida", {"learning_rate": 1e-2, "rectify": True, "ams_bound": True, "k": 3, **WD}, id="rectify-ams-l2"),
    Row(
        "aida",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": False,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.9),
            "adam_debias": True,
            "weight_decouple": True,
            **WD,
        },
        id="rectify-skip-debias",
    ),
    Row(
        "aida",
        {
            "learning_rate": 1e-2,
            "adanorm": True,
            "adanorm_r": 0.9,
            "maximize": True,
            "weight_decouple": True,
            "fixed_decay": True,
            "xi": 1e-10,
            "eps": 1e-6,
            "weight_decay": 0.02,
        },
        id="adanorm-fixed-max",
    ),
]
