"""Parity rows for :mod:`mlx_optim.optimizers.simplifiedademamix`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # simplifiedademamix
    Row("simplifiedademamix", {"learning_rate": 1e-3}),
    Row(
        "simplifiedademamix",
        {"learning_rate": 1e-3, "alpha": 2.0, "beta1_warmup": 10, "min_beta1": 0.8, "weight_decay": 0.1, "eps": 1e-6},
        id="warmup-alpha-decoupled",
    ),
    Row(
        "simplifiedademamix",
        {"learning_rate": 1e-3, "betas": (0.9, 0.9), "weight_decay": 0.1, "weight_decouple": False, "maximize": True},
        id="l2-max",
    ),
    Row("simplifiedademamix", {"learning_rate": 1e-3, "weight_decay": 0.1, "fixed_decay": True}, id="fixed"),
]
