"""Parity rows for :mod:`mlx_optim.optimizers.a2grad`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # A2Grad: no learning rate
    Row("a2grad", {}),
    Row("a2grad", {"beta": 5.0, "lips": 3.0, "variant": "inc", "maximize": True}, id="inc-max"),
    Row("a2grad", {"beta": 2.0, "lips": 5.0, "rho": 0.7, "variant": "exp"}, id="exp"),
]
