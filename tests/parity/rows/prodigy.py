"""Parity rows for :mod:`mlx_optim.optimizers.prodigy`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.dadapt import zero_start

ROWS = [
    # prodigy
    Row("prodigy", {"learning_rate": 0.5}),
    Row(
        "prodigy",
        {
            "learning_rate": 30.0,
            "beta3": 0.9,
            "d_coef": 0.5,
            "growth_rate": 1.1,
            "weight_decay": 0.1,
            "bias_correction": True,
            "safeguard_warmup": True,
        },
        id="bc-safeguard-growth",
    ),
    Row(
        "prodigy",
        {
            "learning_rate": 1.0,
            "betas": (0.8, 0.99),
            "eps": None,
            "weight_decay": 0.05,
            "fixed_decay": True,
            "d0": 1e-4,
        },
        id="atan2-fixed",
    ),
    # weight_decouple=False: the reference's L2 term is added after the moments, i.e. it has no effect
    Row(
        "prodigy",
        {"learning_rate": 0.5, "weight_decay": 0.1, "weight_decouple": False, "eps": 1e-2, "maximize": True},
        id="coupled-eps-max",
    ),
    Row("prodigy", {"learning_rate": 0.5, "weight_decay": 0.1}, runner=zero_start, id="zero-start"),
]
