"""Parity rows for :mod:`mlx_optim.optimizers.sgd`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.groups import group_row

ROWS = [
    # sgd: torch.optim.SGD
    Row("sgd", {"learning_rate": 1e-2}),
    Row("sgd", {"learning_rate": 1e-2, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-2}, id="momentum"),
    Row("sgd", {"learning_rate": 1e-2, "momentum": 0.9, "nesterov": True, "maximize": True}, id="nesterov-max"),
    # sgdw
    Row("sgdw", {"learning_rate": 1e-2}),
    Row("sgdw", {"learning_rate": 1e-2, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1}, id="decoupled-damp"),
    Row(
        "sgdw",
        {
            "learning_rate": 1e-2,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "maximize": True,
        },
        id="l2-nesterov-max",
    ),
    # parameter groups (torch.optim.SGD param_groups): per-group lr, momentum, dampening and decay
    group_row(
        "sgd",
        {"learning_rate": 1e-2, "momentum": 0.9, "weight_decay": 1e-2},
        [
            {"params": "a", "learning_rate": 5e-2, "momentum": 0.5},
            {"params": "c", "weight_decay": 0.0, "dampening": 0.1},
        ],
        id="groups-lr-momentum-wd",
    ),
    # SGD without momentum, one group with it: the buffer exists for that group only (torch: per group)
    group_row("sgd", {"learning_rate": 1e-2}, [{"params": "b|c", "momentum": 0.9}], id="groups-momentum-in-one-group"),
]
