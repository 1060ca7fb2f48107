"""Parity rows for :mod:`mlx_optim.optimizers.ranger21`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # ranger21: pytorch_optimizer.Ranger21 (num_iterations=20 = the harness's step count, so warm-up and
    # warm-down both happen)
    Row("ranger21", {"num_iterations": 20, "learning_rate": 1e-2}),
    Row(
        "ranger21",
        {
            "num_iterations": 20,
            "learning_rate": 1e-2,
            "disable_lr_scheduler": True,
            "use_softplus": False,
            "adam_debias": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "maximize": True,
        },
        id="nosched-nosoftplus-fixed-max",
    ),
    Row(
        "ranger21",
        {
            "num_iterations": 30,
            "learning_rate": 1e-2,
            "centralize_gradients": False,
            "normalize_gradients": False,
            "weight_decouple": False,
            "weight_decay": 0.1,
            "num_warm_up_iterations": 3,
            "num_warm_down_iterations": 8,
            "lookahead_merge_time": 3,
            "lookahead_blending_alpha": 0.8,
            "beta0": 0.5,
            "norm_loss_factor": 1e-2,
            "agc_clipping_value": 0.5,
            "warm_down_min_lr": 1e-3,
            "beta_softplus": 10.0,
            "betas": (0.8, 0.99),
            "agc_eps": 1e-2,
            "eps": 1e-6,
        },
        id="options",
    ),
]
