"""Parity rows for :mod:`mlx_optim.optimizers.vsgd`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # VSGD
    Row("vsgd", {"learning_rate": 1e-1}),
    Row(
        "vsgd",
        {
            "learning_rate": 1e-1,
            "ghattg": 10.0,
            "ps": 1e-4,
            "tau1": 0.5,
            "tau2": 0.7,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="prior-l2-max",
    ),
    Row("vsgd", {"learning_rate": 1e-1, "weight_decay": 0.1}, id="decoupled"),
]
