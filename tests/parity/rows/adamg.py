"""Parity rows for :mod:`mlx_optim.optimizers.adamg`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.constants import WD

ROWS = [
    # adamg
    Row("adamg", {"learning_rate": 0.1}),  # lr=1.0 would be clamped by 1/sqrt(t) on every step,
    Row(
        "adamg",
        {"learning_rate": 0.1, "betas": (0.9, 0.99, 0.9), "p": 0.5, "q": 0.3, "maximize": True, **WD},
        id="l2-pq-max",
    ),
    Row(
        "adamg",
        {"learning_rate": 0.1, "weight_decouple": True, "fixed_decay": True, "eps": 1e-6, "weight_decay": 0.02},
        id="decoupled-fixed",
    ),
    Row("adamg", {"learning_rate": 0.1, "weight_decouple": True, **WD}, id="decoupled"),
]
