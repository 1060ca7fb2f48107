"""Parity rows for :mod:`mlx_optim.optimizers.prodigy`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.dadapt import zero_start
from tests.parity.runners.groups import group_row

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
    # parameter groups (pytorch_optimizer.Prodigy param_groups): D, lr and betas come from the first group (the
    # reference reads param_groups[0]); weight decay and eps are per group
    group_row(
        "prodigy",
        {"learning_rate": 0.5, "weight_decay": 0.1},
        [{"params": "a", "weight_decay": 0.0}, {"params": "c", "weight_decay": 0.3, "eps": 1e-4}],
        id="groups-wd-eps",
    ),
]
