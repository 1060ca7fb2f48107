"""Parity rows for :mod:`mlx_optim.optimizers.conda`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.lowrank import _no_projection, _plain_ref, _svd_ref

ROWS = [
    # conda
    Row("conda", {"learning_rate": 1e-2}, ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False)),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 4, "scale": 0.5, "weight_decay": 0.1, "betas": (0.8, 0.99)},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="gap4-wd",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 3, "projection_type": "reverse_std", "maximize": True, "eps": 1e-6},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="reverse-max",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 5, "projection_type": "full", "eps": 1e-3},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="full",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 5, "projection_type": "left"},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="left",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 4, "projection_type": "right"},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="right",
    ),
    # Conda's unprojected update is GaLore's (pytorch_optimizer's shared update_unprojected_foreach)
    Row(
        "conda",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "projection_filter": _no_projection},
        ref=_plain_ref(pytorch_optimizer.GaLore),
        ref_kwargs={"eps": 1e-8},
        id="filter-none",
    ),
]
