"""Parity rows for :mod:`mlx_optim.optimizers.adan`."""

from __future__ import annotations

from tests.parity.harness import Row

ROWS = [
    # adan (foreach path; per-parameter path with use_gc / adanorm)
    Row("adan", {"learning_rate": 1e-2}),
    Row(
        "adan", {"learning_rate": 1e-2, "weight_decay": 0.1, "max_grad_norm": 1.0, "maximize": True}, id="prox-clip-max"
    ),
    Row(
        "adan",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": True, "use_gc": True, "adanorm": True},
        id="decoupled-gc-adanorm",
    ),
]
