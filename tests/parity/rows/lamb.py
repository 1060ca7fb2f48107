"""Parity rows for :mod:`mlx_optim.optimizers.lamb`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.groups import group_row

ROWS = [
    # lamb: foreach path (defaults, l2) and per-parameter path (rectify / adanorm)
    Row("lamb", {"learning_rate": 1e-2}),
    Row(
        "lamb",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "grad_averaging": False,
            "pre_norm": True,
            "max_grad_norm": 1.0,
            "maximize": True,
        },
        id="l2-prenorm-max",
    ),
    Row(
        "lamb",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "weight_decay": 0.02,
            "fixed_decay": True,
            "adanorm": True,
            "adam_debias": True,
            "n_sma_threshold": 4,
            "betas": (0.9, 0.9),
        },
        id="rectify-fixed-adanorm",
    ),
    Row(
        "lamb",
        {
            "learning_rate": 1e-2,
            "rectify": True,
            "degenerated_to_sgd": True,
            "adam": True,
            "betas": (0.9, 0.99),
            "pre_norm": True,
            "max_grad_norm": 0.0,
        },
        id="rectify-sgd-adam",
    ),
    # parameter groups (pytorch_optimizer.Lamb param_groups): per-leaf trust ratios with per-group lr, betas and
    # decay
    group_row(
        "lamb",
        {"learning_rate": 1e-2, "weight_decay": 0.1},
        [{"params": "a", "learning_rate": 3e-3, "betas": (0.8, 0.99)}, {"params": "c", "weight_decay": 0.0}],
        id="groups-lr-betas-wd",
    ),
]
