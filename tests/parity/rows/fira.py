"""Parity rows for :mod:`mlx_optim.optimizers.fira`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.lowrank import _no_projection, _plain_ref, _svd_ref

ROWS = [
    # fira
    Row("fira", {"learning_rate": 1e-2}, ref=_svd_ref(pytorch_optimizer.Fira)),
    Row(
        "fira",
        {"learning_rate": 1e-2, "rank": 3, "update_proj_gap": 4, "scale": 0.25, "weight_decay": 0.1},
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="rank3-gap4-wd",
    ),
    Row(
        "fira",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 3, "projection_type": "reverse_std", "maximize": True},
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="reverse-max",
    ),
    Row(
        "fira",
        {
            "learning_rate": 1e-2,
            "rank": 3,
            "update_proj_gap": 5,
            "projection_type": "full",
            "betas": (0.8, 0.99),
            "eps": 1e-3,
        },
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="full",
    ),
    Row(
        "fira",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 6, "projection_type": "left", "eps": 1e-8},
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="left",
    ),
    Row(
        "fira",
        {"learning_rate": 1e-2, "projection_filter": _no_projection},
        ref=_plain_ref(pytorch_optimizer.Fira),
        id="filter-none",
    ),
]
