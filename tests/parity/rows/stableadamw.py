"""Parity rows for :mod:`mlx_optim.optimizers.stableadamw`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # stableadamw (foreach path; Kahan summation only acts on bf16/fp16 parameters)
    Row("stableadamw", {"learning_rate": 1e-2}),
    Row(
        "stableadamw",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "maximize": True, "betas": (0.8, 0.9)},
        id="l2-max",
    ),
    Row("stableadamw", {"learning_rate": 1e-2, "kahan_sum": False, "weight_decay": 0.2, "eps": 1e-3}, id="nokahan-eps"),
]
