"""Parity rows for :mod:`mlx_optim.optimizers.fromage`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # fromage: p_bound=1.0 makes the norm bound fire as soon as a tensor grows
    Row("fromage", {"learning_rate": 1e-2}),
    Row("fromage", {"learning_rate": 5e-2, "p_bound": 1.0, "maximize": True}, id="bound-max"),
]
