"""Parity rows for :mod:`mlx_optim.optimizers.came`."""

from __future__ import annotations

from tests.parity.harness import Row

# Betas whose float32 value is the decimal one: 1 - beta is then the same on both sides.
EXACT_CAME_BETAS = (0.9, 1 - 2**-10, 1 - 2**-13)


ROWS = [
    # came: pytorch_optimizer.CAME (foreach path on CPU)
    # default tolerance since 1 - beta3 is the double-precision complement (was atol 4e-4: the float32
    # 1 - 0.9999 is 1.7e-4 too large, and the instability EMA has no bias correction to cancel it)
    Row("came", {"learning_rate": 1e-2}),
    Row(
        "came",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99, 0.999),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "ams_bound": True,
            "clip_threshold": 0.5,
            "eps2": 1e-10,
            "maximize": True,
        },
        id="l2-ams-max",
    ),
    Row(
        "came",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "eps1": 1e-20, "betas": EXACT_CAME_BETAS},
        id="fixed-decay-exact-betas",
    ),
]
