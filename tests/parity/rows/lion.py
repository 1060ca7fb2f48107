"""Parity rows for :mod:`mlx_optim.optimizers.lion`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.groups import group_row

ROWS = [
    Row("lion", {"learning_rate": 1e-3}),
    Row(
        "lion",
        {"learning_rate": 1e-3, "weight_decay": 0.1, "use_gc": True, "cautious": True, "adanorm": True},
        id="gc-cautious-adanorm",
    ),
    Row("lion", {"learning_rate": 1e-3, "weight_decay": 0.1, "weight_decouple": False, "maximize": True}, id="l2-max"),
    # parameter groups (pytorch_optimizer.Lion param_groups)
    group_row(
        "lion",
        {"learning_rate": 1e-3, "weight_decay": 0.1},
        [{"params": "a", "learning_rate": 3e-4, "betas": (0.95, 0.98)}, {"params": "c", "weight_decay": 0.0}],
        id="groups-lr-betas-wd",
    ),
]
