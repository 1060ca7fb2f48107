"""Parity rows for :mod:`mlx_optim.optimizers.avagrad`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # avagrad
    Row("avagrad", {"learning_rate": 1e-1}),
    Row(
        "avagrad",
        {"learning_rate": 1e-1, "adam_debias": True, "betas": (0.8, 0.99), "eps": 1e-2, "maximize": True, **WD},
        id="debias-max",
    ),
    Row("avagrad", {"learning_rate": 1e-1, "weight_decouple": False, **WD}, id="l2"),
    Row("avagrad", {"learning_rate": 1e-1, "fixed_decay": True, "weight_decay": 0.02}, id="fixed"),
]
