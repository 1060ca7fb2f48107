"""Parity rows for :mod:`mlx_optim.optimizers.stablespam`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # stablespam (per-parameter path)
    Row("stablespam", {"learning_rate": 1e-2}),
    Row(
        "stablespam",
        {
            "learning_rate": 1e-2,
            "t_max": 10,
            "eta_min": 0.3,
            "update_proj_gap": 7,
            "weight_decay": 0.1,
            "gamma1": -1.0,
            "theta": 0.9,
            "maximize": True,
        },
        id="cosine-reset",
    ),
    Row("stablespam", {"learning_rate": 1e-2, "gamma2": 0.5, "update_proj_gap": 1, "t_max": 0}, id="reset-every-step"),
]
