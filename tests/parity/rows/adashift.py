"""Parity rows for :mod:`mlx_optim.optimizers.adashift`."""

from __future__ import annotations

import mlx.core as mx
import torch

from tests.parity.harness import Row

ROWS = [
    # adashift: the default keep_num=10 leaves 10 update steps in a 25-step run
    Row("adashift", {"learning_rate": 5e-2}, steps=25),
    Row(
        "adashift",
        {"learning_rate": 1e-2, "keep_num": 3, "reduce_func": None, "cautious": True, "maximize": True},
        id="identity-cautious-max",
    ),
    Row(
        "adashift",
        {"learning_rate": 1e-2, "keep_num": 4, "reduce_func": mx.mean, "betas": (0.8, 0.99), "eps": 1e-6},
        ref_kwargs={"reduce_func": torch.mean},
        id="mean",
    ),
    Row("adashift", {"learning_rate": 1e-2, "keep_num": 1, "betas": (0.0, 0.9)}, id="keep1-beta0"),
]
