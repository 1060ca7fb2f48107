"""Parity rows for :mod:`mlx_optim.optimizers.sm3`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # sm3: pytorch_optimizer.SM3 (per-parameter path on CPU)
    Row("sm3", {"learning_rate": 1e-2}),
    Row(
        "sm3",
        {"learning_rate": 1e-2, "momentum": 0.9, "beta": 0.9, "eps": 1e-8, "maximize": True},
        id="momentum-beta-max",
    ),
    Row("sm3", {"learning_rate": 1e-2, "momentum": 0.3, "beta": 0.5}, id="small-momentum"),
]
