"""Parity rows for :mod:`mlx_optim.optimizers.adopt`."""

from __future__ import annotations

from tests.parity.harness import Row


def clip_cube_root(step):
    """ADOPT clip bound t**0.333 (the timm/Keras-seed schedule); works on ints and mx arrays alike."""
    return step**0.333


ROWS = [
    # adopt
    Row("adopt", {"learning_rate": 1e-2}),
    Row(
        "adopt",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "clip_lambda": clip_cube_root,
            "weight_decay": 0.1,
            "cautious": True,
            "stable_adamw": True,
        },
        id="clip-l2-cautious-stable",
    ),
    Row(
        "adopt",
        {
            "learning_rate": 1e-2,
            "clip_lambda": None,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "eps": 1e-3,
            "maximize": True,
        },
        id="noclip-decoupled-max",
    ),
    Row(
        "adopt", {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": True}, id="fixed"
    ),
]
