"""Parity rows for :mod:`mlx_optim.optimizers.swats`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row


def swats_group_ref(params, adam_debias=False, **kwargs):
    """SWATS reads ``adam_debias`` only from a parameter group (its constructor drops ``**kwargs``)."""
    return pytorch_optimizer.SWATS([{"params": params, "adam_debias": adam_debias}], **kwargs)


ROWS = [
    # swats (per-parameter path on CPU)
    Row("swats", {"learning_rate": 1e-2}),
    Row(
        "swats",
        {"learning_rate": 1e-2, "eps": 0.01, "nesterov": True, "weight_decay": 0.01, "weight_decouple": True},
        id="switch-nesterov-decoupled",
        steps=30,
    ),
    Row(
        "swats",
        {
            "learning_rate": 1e-2,
            "eps": 0.01,
            "ams_bound": True,
            "weight_decay": 0.02,
            "fixed_decay": True,
            "weight_decouple": True,
            "adam_debias": True,
            "maximize": True,
        },
        ref=swats_group_ref,
        id="switch-ams-fixed-debias-max",
        steps=30,
    ),
    Row(
        "swats",
        {"learning_rate": 1e-2, "eps": 0.01, "nesterov": True, "weight_decay": 0.1},
        id="switch-nesterov-l2",
        steps=30,
    ),
]
