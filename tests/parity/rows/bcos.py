"""Parity rows for :mod:`mlx_optim.optimizers.bcos`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # bcos
    Row("bcos", {"learning_rate": 1e-2}),
    Row("bcos", {"learning_rate": 1e-2, "mode": "g", "beta": 0.8, "beta2": 0.95, "eps": 1e-4}, id="g-beta2"),
    Row("bcos", {"learning_rate": 1e-2, "mode": "g", "weight_decouple": False}, id="g-l2"),
    Row("bcos", {"learning_rate": 1e-2, "mode": "m", "weight_decay": 0.0, "maximize": True}, id="m-max"),
    Row("bcos", {"learning_rate": 1e-2, "mode": "m", "beta2": 0.99, "weight_decouple": False}, id="m-beta2-l2"),
    Row("bcos", {"learning_rate": 1e-2, "simple_cond": True, "maximize": True}, id="c-simple-max"),
    Row(
        "bcos",
        {"learning_rate": 1e-2, "simple_cond": True, "beta2": 0.9, "weight_decouple": False},
        id="c-simple-b2-l2",
    ),
    Row("bcos", {"learning_rate": 1e-2, "beta": 0.5, "weight_decouple": False, "maximize": True}, id="c-l2-max"),
]
