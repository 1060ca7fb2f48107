"""Parity rows for :mod:`mlx_optim.optimizers.adam`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.groups import group_row

ROWS = [
    # adam / adamw: torch.optim
    Row("adam", {"learning_rate": 1e-2}),
    Row(
        "adam",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True},
        id="l2-ams",
    ),
    Row(
        "adam",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
        id="decoupled-max",
    ),
    Row("adamw", {"learning_rate": 1e-2}),
    Row("adamw", {"learning_rate": 1e-2, "weight_decay": 0.2, "amsgrad": True, "betas": (0.85, 0.95)}, id="ams"),
    # parameter groups (torch.optim.Adam param_groups): L2 decay by default; a group with its own lr and betas,
    # one without decay
    group_row(
        "adam",
        {"learning_rate": 1e-2, "weight_decay": 1e-2},
        [
            {"params": "a", "learning_rate": 3e-3, "betas": (0.8, 0.99)},
            {"params": "c", "weight_decay": 0.0, "eps": 1e-6},
        ],
        id="groups-lr-betas-wd",
    ),
    # parameter groups (torch.optim.AdamW): three groups (b unmatched), per-group lr, decay and betas
    group_row(
        "adamw",
        {"learning_rate": 1e-2, "weight_decay": 0.1},
        [
            {"params": "a", "learning_rate": 2e-3, "weight_decay": 0.0},
            {"params": ["c"], "betas": (0.85, 0.95), "weight_decay": 0.3},
        ],
        id="groups-lr-wd-betas",
    ),
]
