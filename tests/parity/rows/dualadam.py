"""Parity rows for :mod:`mlx_optim.optimizers.dualadam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # dualadam: pytorch_optimizer.DualAdam; the default switch_rate keeps the inverse blend on for all 20 steps
    Row("dualadam", {"learning_rate": 1e-2}),
    Row(
        "dualadam",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "switch_rate": 0.08, "weight_decay": 0.1, "eps": 1e-6},
        id="switch-l2",  # inverse blend for steps 1-11, then Adam
    ),
    Row(
        "dualadam",
        {"learning_rate": 1e-2, "switch_rate": 0.3, "weight_decay": 0.1, "weight_decouple": True, "maximize": True},
        id="decoupled-max",  # blend for steps 1-2, then Adam
    ),
    Row(
        "dualadam",
        {"learning_rate": 1e-2, "weight_decay": 1e-2, "weight_decouple": True, "fixed_decay": True, "switch_rate": 1.0},
        id="fixed-adam",  # switch_rate 1: plain Adam from the first step
    ),
    Row("dualadam", {"learning_rate": 1e-2, "switch_rate": 0.0}, id="inverse-only"),  # rate 1: step m_hat * d,
]
