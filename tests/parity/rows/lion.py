"""Parity rows for :mod:`mlx_optim.optimizers.lion`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    Row("lion", {"learning_rate": 1e-3}),
    Row(
        "lion",
        {"learning_rate": 1e-3, "weight_decay": 0.1, "use_gc": True, "cautious": True, "adanorm": True},
        id="gc-cautious-adanorm",
    ),
    Row("lion", {"learning_rate": 1e-3, "weight_decay": 0.1, "weight_decouple": False, "maximize": True}, id="l2-max"),
]
