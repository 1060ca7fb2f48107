"""Parity rows for :mod:`mlx_optim.optimizers.adagrad`."""

from __future__ import annotations

import torch

from tests.parity.harness import Row

ROWS = [
    # adagrad: torch.optim.Adagrad (pytorch_optimizer has no Adagrad)
    Row("adagrad", {"learning_rate": 1e-1}, ref=torch.optim.Adagrad),
    Row(
        "adagrad",
        {
            "learning_rate": 1e-1,
            "lr_decay": 0.05,
            "initial_accumulator_value": 0.1,
            "weight_decay": 0.1,
            "eps": 1e-8,
            "maximize": True,
        },
        ref=torch.optim.Adagrad,
        id="options",
    ),
]
