"""Parity rows for :mod:`mlx_optim.optimizers.ano`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # ano: pytorch_optimizer.Ano (sign-like step: learning rate 1e-3)
    Row("ano", {"learning_rate": 1e-3}),
    Row(
        "ano",
        {
            "learning_rate": 1e-3,
            "betas": (0.9, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "logarithmic_schedule": True,
            "eps": 1e-6,
            "maximize": True,
        },
        id="l2-log-max",
    ),
    Row("ano", {"learning_rate": 1e-3, "weight_decay": 0.1}, id="decoupled"),
    Row("ano", {"learning_rate": 1e-3, "weight_decay": 1e-2, "fixed_decay": True}, id="fixed"),
]
