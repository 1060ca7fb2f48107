"""Parity rows for :mod:`mlx_optim.optimizers.sgd`."""

from __future__ import annotations

from tests.parity.harness import Row

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
]
