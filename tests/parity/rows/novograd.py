"""Parity rows for :mod:`mlx_optim.optimizers.novograd`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # novograd (foreach path)
    Row("novograd", {"learning_rate": 1e-2}),
    Row(
        "novograd",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "grad_averaging": True, "adam_debias": True, "maximize": True},
        id="l2-avg-debias",
    ),
    Row(
        "novograd",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.02,
            "weight_decouple": True,
            "fixed_decay": True,
            "betas": (0.9, 0.9),
        },
        id="decoupled-fixed",
    ),
]
