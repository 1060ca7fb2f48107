"""Parity rows for :mod:`mlx_optim.optimizers.rprop`."""

from __future__ import annotations

import torch

from tests.parity.harness import Row

ROWS = [
    # rprop: torch.optim.Rprop
    Row("rprop", {"learning_rate": 1e-2}, ref=torch.optim.Rprop),
    Row(
        "rprop",
        {"learning_rate": 5e-2, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)},
        ref=torch.optim.Rprop,
        id="options",
    ),
]
