"""Parity rows for :mod:`mlx_optim.optimizers.galore`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.lowrank import _no_projection, _plain_ref, _svd_ref

ROWS = [
    # galore
    Row("galore", {"learning_rate": 1e-2}, ref=_svd_ref(pytorch_optimizer.GaLore)),
    Row(
        "galore",
        {
            "learning_rate": 1e-2,
            "rank": 3,
            "update_proj_gap": 4,
            "scale": 0.25,
            "weight_decay": 0.1,
            "betas": (0.8, 0.99),
            "eps": 1e-8,
        },
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="rank3-gap4-wd",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 3, "projection_type": "reverse_std", "maximize": True},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="reverse-max",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 4, "update_proj_gap": 5, "projection_type": "full", "scale": 0.5, "eps": 1e-3},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="full",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": None, "update_proj_gap": 6, "projection_type": "right"},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="right-fullrank",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 3, "update_proj_gap": 7, "projection_type": "left"},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="left",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 4, "projection_type": "random"},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="random-is-svd",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "projection_filter": _no_projection},
        ref=_plain_ref(pytorch_optimizer.GaLore),
        id="filter-none",
    ),
]
