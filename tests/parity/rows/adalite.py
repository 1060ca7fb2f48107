"""Parity rows for :mod:`mlx_optim.optimizers.adalite`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # adalite
    Row("adalite", {"learning_rate": 1e-2}),
    Row(
        "adalite",
        {"learning_rate": 1e-2, "weight_decouple": False, "tau": 0.5, "maximize": True, **WD},
        id="l2-tau-max",
    ),
    Row(
        "adalite",
        {
            "learning_rate": 1e-2,
            "fixed_decay": True,
            "ratio_min": 0.5,
            "g_norm_min": 1.0,
            "eps1": 1e-4,
            "eps2": 1e-6,
            "betas": (0.8, 0.99),
            "weight_decay": 0.02,
        },
        id="fixed-bounds",
    ),
]
