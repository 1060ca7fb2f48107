"""Parity rows for :mod:`mlx_optim.optimizers.adamax`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    Row("adamax", {"learning_rate": 1e-2}),
    Row("adamax", {"learning_rate": 1e-2, "weight_decay": 0.1, "adam_debias": True, "adanorm": True}, id="l2-adanorm"),
    Row(
        "adamax",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True, "maximize": True},
        id="decoupled-fixed",
    ),
]
