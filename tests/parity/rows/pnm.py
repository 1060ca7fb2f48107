"""Parity rows for :mod:`mlx_optim.optimizers.pnm`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # pnm
    Row("pnm", {"learning_rate": 1e-2}),
    Row(
        "pnm", {"learning_rate": 1e-2, "betas": (0.8, 0.5), "weight_decay": 0.1, "fixed_decay": True}, id="betas-fixed"
    ),
    Row("pnm", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "maximize": True}, id="l2-max"),
]
