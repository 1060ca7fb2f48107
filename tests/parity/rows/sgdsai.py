"""Parity rows for :mod:`mlx_optim.optimizers.sgdsai`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # SGDSaI
    Row("sgdsai", {"learning_rate": 1e-2}),
    Row(
        "sgdsai",
        {"learning_rate": 1e-2, "momentum": 0.0, "weight_decay": 0.1, "weight_decouple": False, "eps": 1e-6},
        id="no-momentum-l2",
    ),
    Row(
        "sgdsai",
        {"learning_rate": 1e-2, "momentum": 0.5, "weight_decay": 0.1, "weight_decouple": False, "maximize": True},
        id="l2-quirk-max",
    ),
    Row("sgdsai", {"learning_rate": 1e-2, "momentum": 0.0}, id="no-momentum"),
]
