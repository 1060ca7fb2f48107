"""Parity rows for :mod:`mlx_optim.optimizers.dadapt`."""

from __future__ import annotations

from tests.parity.harness import Row
from tests.parity.runners.dadapt import zero_start

ROWS = [
    # dadaptadagrad
    Row("dadaptadagrad", {"learning_rate": 30.0}),
    Row(
        "dadaptadagrad",
        {"learning_rate": 1.0, "momentum": 0.9, "weight_decay": 0.1, "weight_decouple": True, "eps": 1e-8, "d0": 1e-2},
        id="momentum-decoupled",
    ),
    Row(
        "dadaptadagrad",
        {
            "learning_rate": 0.5,
            "momentum": 0.5,
            "weight_decay": 0.05,
            "weight_decouple": True,
            "fixed_decay": True,
            "growth_rate": 1.5,
            "d0": 1e-3,
        },
        id="fixed-growth",
    ),
    Row(
        "dadaptadagrad",
        {"learning_rate": 30.0, "weight_decay": 0.1, "maximize": True, "eps": 1e-6},
        id="l2-max",
    ),
    # dadaptadam
    Row("dadaptadam", {"learning_rate": 1.0}),
    Row(
        "dadaptadam",
        {
            "learning_rate": 1.0,
            "weight_decay": 0.1,
            "weight_decouple": True,
            "bias_correction": True,
            "growth_rate": 2.0,
            "d0": 1e-4,
        },
        id="decoupled-bc-growth",
    ),
    Row(
        "dadaptadam",
        {"learning_rate": 10.0, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "maximize": True},
        id="l2-max",
    ),
    Row(
        "dadaptadam",
        {"learning_rate": 1.0, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True},
        id="fixed",
    ),
    # dadaptsgd
    Row("dadaptsgd", {"learning_rate": 30.0}),
    Row(
        "dadaptsgd",
        {
            "learning_rate": 30.0,
            "momentum": 0.5,
            "weight_decay": 0.01,
            "weight_decouple": True,
            "growth_rate": 2.0,
            "d0": 1e-4,
        },
        id="decoupled-growth",
    ),
    Row(
        "dadaptsgd",
        {"learning_rate": 3.0, "momentum": 0.0, "weight_decay": 0.1, "maximize": True, "d0": 1e-3},
        id="l2-max",
    ),
    Row(
        "dadaptsgd",
        {"learning_rate": 30.0, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True},
        id="fixed",
    ),
    # dadaptlion
    Row("dadaptlion", {"learning_rate": 10.0}),
    Row(
        "dadaptlion",
        {"learning_rate": 1.0, "betas": (0.8, 0.99), "weight_decay": 0.1, "weight_decouple": True, "d0": 1e-4},
        id="decoupled",
    ),
    Row("dadaptlion", {"learning_rate": 10.0, "weight_decay": 0.1, "maximize": True}, id="l2-max"),
    Row(
        "dadaptlion",
        {"learning_rate": 1.0, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True},
        id="fixed",
    ),
    # dadaptadan (the maximize row also pins the reference's first-step previous_grad quirk)
    Row("dadaptadan", {"learning_rate": 30.0}),
    Row(
        "dadaptadan",
        {
            "learning_rate": 30.0,
            "betas": (0.9, 0.9, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": True,
            "growth_rate": 2.0,
            "d0": 1e-4,
        },
        id="decoupled-growth",
    ),
    Row(
        "dadaptadan",
        {"learning_rate": 30.0, "weight_decay": 0.1, "eps": 1e-6, "maximize": True},
        id="divide-max",
    ),
    # early-return paths: all-zero gradients on the first steps
    Row(
        "dadaptadagrad",
        {"learning_rate": 30.0, "momentum": 0.5, "weight_decay": 0.01, "weight_decouple": True},
        runner=zero_start,
        id="zero-start",
    ),
    Row(
        "dadaptadam",
        {"learning_rate": 1.0, "weight_decay": 0.1, "weight_decouple": True},
        runner=zero_start,
        id="zero-start",
    ),
    Row(
        "dadaptsgd",
        {"learning_rate": 30.0, "weight_decay": 0.1, "weight_decouple": True},
        runner=zero_start,
        id="zero-start",
    ),
    Row("dadaptlion", {"learning_rate": 10.0}, runner=zero_start, id="zero-start"),
    Row("dadaptadan", {"learning_rate": 30.0, "weight_decay": 0.1}, runner=zero_start, id="zero-start"),
]
