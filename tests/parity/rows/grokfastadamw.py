"""Parity rows for :mod:`mlx_optim.optimizers.grokfastadamw`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # grokfastadamw (foreach path)
    Row("grokfastadamw", {"learning_rate": 1e-2}),
    Row(
        "grokfastadamw",
        {
            "learning_rate": 1e-2,
            "grokfast_after_step": 5,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "normalize_lr": False,
            "grokfast_alpha": 0.9,
            "maximize": True,
        },
        id="after-l2-max",
    ),
    Row(
        "grokfastadamw",
        {"learning_rate": 1e-2, "grokfast": False, "weight_decay": 0.02, "fixed_decay": True},
        id="plain-fixed",
    ),
]
