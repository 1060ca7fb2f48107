"""Parity rows for :mod:`mlx_optim.optimizers.adopt`."""

from __future__ import annotations

from mlx_optim.check.fns import clip_cube_root
from tests.parity.harness import Row

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
