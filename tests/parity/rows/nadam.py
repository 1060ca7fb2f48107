"""Parity rows for :mod:`mlx_optim.optimizers.nadam`."""

from __future__ import annotations

import torch

from tests.parity.harness import Row


# ---------------------------------------------------------------------------- nadamw
def nadamw_ref(params, **kw):
    return torch.optim.NAdam(params, decoupled_weight_decay=True, **kw)


ROWS = [
    # nadamw: torch.optim.NAdam(decoupled_weight_decay=True); defaults are the seed's (lr 1e-3, wd 1e-2)
    Row("nadamw", {"learning_rate": 1e-2}, ref=nadamw_ref, ref_kwargs={"weight_decay": 1e-2}),
    Row(
        "nadamw",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "momentum_decay": 1e-2,
            "betas": (0.8, 0.99),
            "eps": 1e-6,
            "maximize": True,
        },
        ref=nadamw_ref,
        id="options-max",
    ),
    # nadam: torch.optim.NAdam
    Row("nadam", {"learning_rate": 1e-2}),
    Row("nadam", {"learning_rate": 1e-2, "weight_decay": 0.1, "momentum_decay": 1e-2}, id="l2"),
    Row(
        "nadam",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
        id="decoupled-max",
    ),
]
