"""Parity rows for :mod:`mlx_optim.optimizers.shampoo`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.float64 import float64_reference

ROWS = [
    # shampoo
    Row(
        "shampoo",
        {"learning_rate": 1e-2},
        ref=float64_reference("shampoo"),
        atol=5e-4,
        id="defaults-f64",
        note="The (7,) parameter's statistic is 1e-6*I + rank-k, so its inverse root is ill-conditioned in "
        "float32: the reference's own float32 run differs from its float64 run by up to 1.4e-3 (ours from the "
        "float32 reference by 1.6e-3); we differ from the float64 run by at most 2.7e-4 (measured over 20 steps). "
        "The row compares against the reference run in float64. Rows with matrix_eps >= 1e-2 use the default "
        "tolerance.",
    ),
    Row("shampoo", {"learning_rate": 1e-2, "matrix_eps": 1e-2}, id="eps"),
    Row(
        "shampoo",
        {
            "learning_rate": 1e-2,
            "momentum": 0.5,
            "weight_decay": 0.1,
            "preconditioning_compute_steps": 3,
            "matrix_eps": 0.1,
        },
        id="momentum-l2-every3",
    ),
    Row(
        "shampoo",
        {
            "learning_rate": 1e-2,
            "momentum": 0.5,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "maximize": True,
            "matrix_eps": 0.1,
        },
        id="decoupled-max",
    ),
    Row(
        "shampoo",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True, "matrix_eps": 1e-3},
        id="fixed",
    ),
]
