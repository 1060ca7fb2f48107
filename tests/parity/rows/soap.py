"""Parity rows for :mod:`mlx_optim.optimizers.soap`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.float64 import shapes_runner
from tests.parity.runners.groups import group_row

ROWS = [
    # soap
    Row("soap", {"learning_rate": 1e-2}),
    Row(
        "soap",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.99),
            "shampoo_beta": 0.8,
            "weight_decay": 0.1,
            "precondition_frequency": 3,
            "correct_bias": False,
            "normalize_gradient": True,
            "maximize": True,
        },
        id="freq3-norm-max",
    ),
    Row(
        "soap",
        {"learning_rate": 1e-2, "precondition_frequency": 2, "max_precondition_dim": 6, "merge_dims": True},
        runner=shapes_runner([(7,), (2, 3, 8), (2, 2, 3, 3)]),
        id="merge",
    ),
    Row(
        "soap",
        {
            "learning_rate": 1e-2,
            "precondition_frequency": 3,
            "max_precondition_dim": 4,
            "merge_dims": True,
            "data_format": "channels_last",
        },
        runner=shapes_runner([(2, 3, 3, 2), (3, 4)]),
        id="merge-channels-last",
    ),
    Row(
        "soap",
        {"learning_rate": 1e-2, "precondition_1d": True, "precondition_frequency": 2, "weight_decay": 0.0},
        runner=shapes_runner([(2,), (1,), (5, 6)]),
        id="precondition-1d",
    ),
    Row(
        "soap",
        {"learning_rate": 1e-2, "precondition_frequency": 4, "max_precondition_dim": 5, "data_format": "channels_last"},
        id="maxdim",
    ),
    # parameter groups (pytorch_optimizer.SOAP param_groups): per-group lr, betas (shampoo_beta follows a
    # group's beta2), decay, eps
    group_row(
        "soap",
        {"learning_rate": 1e-2},
        [
            {"params": "a", "learning_rate": 3e-3, "betas": (0.9, 0.99)},
            {"params": "c", "weight_decay": 0.1, "eps": 1e-6},
        ],
        id="groups-lr-betas-wd-eps",
    ),
]
