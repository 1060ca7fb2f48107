"""Parity rows for :mod:`mlx_optim.optimizers.adatam`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # adatam
    Row("adatam", {"learning_rate": 1e-2}),
    Row("adatam", {"learning_rate": 1e-2, "decay_rate": 0.5, "maximize": True, **WD}, id="decoupled-max"),
    Row("adatam", {"learning_rate": 1e-2, "weight_decouple": False, "betas": (0.8, 0.99), **WD}, id="l2"),
    Row("adatam", {"learning_rate": 1e-2, "fixed_decay": True, "eps": 1e-6, "weight_decay": 0.02}, id="fixed"),
]
