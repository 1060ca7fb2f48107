"""Parity rows for :mod:`mlx_optim.optimizers.radam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # radam, adamax, adadelta, lion, tiger: pytorch_optimizer
    Row("radam", {"learning_rate": 1e-2}),
    Row(
        "radam",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "degenerated_to_sgd": True,
            "adam_debias": True,
            "adanorm": True,
            "betas": (0.9, 0.9),
        },
        id="sgd-debias-adanorm",
    ),
    Row(
        "radam",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.8),
            "maximize": True,
        },
        id="fixed-threshold",
    ),
]
