"""Parity rows for :mod:`mlx_optim.optimizers.sgdp`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # sgdp: delta >= 1 makes the channel/layer projection fire on the test tensors
    Row("sgdp", {"learning_rate": 1e-2}),
    Row(
        "sgdp",
        {"learning_rate": 1e-2, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1, "delta": 1.0, "wd_ratio": 0.5},
        id="project-damp",
    ),
    Row(
        "sgdp",
        {
            "learning_rate": 1e-2,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "delta": 3.0,
            "eps": 1e-6,
            "maximize": True,
        },
        id="nesterov-fixed-max",
    ),
    Row("sgdp", {"learning_rate": 1e-2, "momentum": 0.5, "weight_decay": 0.1, "weight_decouple": False}, id="l2"),
]
