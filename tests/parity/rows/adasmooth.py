"""Parity rows for :mod:`mlx_optim.optimizers.adasmooth`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # adasmooth
    Row("adasmooth", {"learning_rate": 1e-2}),
    Row("adasmooth", {"learning_rate": 1e-2, "betas": (0.3, 0.9), "maximize": True, **WD}, id="l2-max"),
    Row(
        "adasmooth",
        {"learning_rate": 1e-2, "weight_decouple": True, "fixed_decay": True, "eps": 1e-4, "weight_decay": 0.02},
        id="decoupled-fixed",
    ),
    Row("adasmooth", {"learning_rate": 1e-2, "weight_decouple": True, **WD}, id="decoupled"),
]
