"""Parity rows for :mod:`mlx_optim.optimizers.adahessian`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.curvature import STATS_NOTE, e2e_runner, inject_runner, stats_compare, stats_runner

ROWS = [
    # adahessian: pytorch_optimizer.AdaHessian
    Row("adahessian", {"learning_rate": 1e-1}, runner=e2e_runner, id="e2e"),
    Row("adahessian", {"learning_rate": 1e-1}, runner=inject_runner, id="inject"),
    Row(
        "adahessian",
        {
            "learning_rate": 5e-2,
            "betas": (0.8, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "hessian_power": 0.5,
            "update_period": 3,
            "eps": 1e-8,
            "adam_debias": True,
        },
        runner=inject_runner,
        id="inject-l2-power-period-debias",
    ),
    Row(
        "adahessian",
        {
            "learning_rate": 5e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "hessian_power": 0.7,
            "update_period": 4,
            "num_samples": 2,
            "maximize": True,
        },
        runner=e2e_runner,
        id="e2e-fixed-period-samples-max",
    ),
    Row(
        "adahessian",
        {"learning_rate": 0.0, "num_samples": 3, "hessian_distribution": "gaussian", "seed": 3},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-gaussian",
    ),
    Row(
        "adahessian",
        {"learning_rate": 0.0},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-rademacher",
    ),
]
