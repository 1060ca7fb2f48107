"""Parity rows for :mod:`mlx_optim.optimizers.adamc`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # adamc
    Row("adamc", {"learning_rate": 1e-2}),
    Row("adamc", {"learning_rate": 1e-2, "ams_bound": True, "normalized": True, **WD}, id="ams-normalized"),
    Row("adamc", {"learning_rate": 1e-2, "weight_decouple": False, "maximize": True, "eps": 1e-6, **WD}, id="l2-max"),
    Row("adamc", {"learning_rate": 1e-2, "fixed_decay": True, "betas": (0.8, 0.99), "weight_decay": 0.02}, id="fixed"),
]
