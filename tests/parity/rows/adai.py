"""Parity rows for :mod:`mlx_optim.optimizers.adai`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row

ROWS = [
    # Adai
    Row("adai", {"learning_rate": 1e-2}),
    Row(
        "adai",
        {
            "learning_rate": 1e-2,
            "betas": (0.2, 0.95),
            "weight_decay": 0.1,
            "eps": 1e-4,
            "use_gc": True,
            "maximize": True,
        },
        id="l2-gc-max",
    ),
    Row(
        "adai",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True},
        id="decoupled-fixed",
    ),
    Row(
        "adai",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "stable_weight_decay": True, "dampening": 0.8},
        id="stable-l2-damp",
    ),
    Row(
        "adai",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "stable_weight_decay": True, "weight_decouple": True},
        id="stable-decoupled",
    ),
    # AdaiV2: pytorch_optimizer.Adai (its dampening option)
    Row("adaiv2", {"learning_rate": 1e-2}, ref=pytorch_optimizer.Adai),
    Row(
        "adaiv2",
        {"learning_rate": 1e-2, "dampening": 0.6, "weight_decay": 1e-2, "weight_decouple": True},
        ref=pytorch_optimizer.Adai,
        id="damp-decoupled",
    ),
]
