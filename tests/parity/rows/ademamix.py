"""Parity rows for :mod:`mlx_optim.optimizers.ademamix`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # ademamix
    Row("ademamix", {"learning_rate": 1e-2}),
    Row(
        "ademamix",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99, 0.999),
            "alpha": 3.0,
            "t_alpha_beta3": 10,
            "weight_decay": 0.1,
            "cautious": True,
            "maximize": True,
        },
        id="warmup-l2-cautious-max",
    ),
    Row(
        "ademamix",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "fixed_decay": True,
            "stable_adamw": True,
            "t_alpha_beta3": 30,
            "eps": 1e-6,
        },
        id="fixed-stable",
    ),
    Row("ademamix", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True}, id="decoupled"),
]
