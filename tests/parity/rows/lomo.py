"""Parity rows for :mod:`mlx_optim.optimizers.lomo`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.factored import FusedBackwardRef


def lomo_ref(params, **kw):
    return FusedBackwardRef(pytorch_optimizer.LOMO, {f"p{i}": p for i, p in enumerate(params)}, **kw)


ROWS = [
    # lomo: pytorch_optimizer.LOMO(model) via grad_norm + fused_backward
    Row("lomo", {"learning_rate": 1e-2}, ref=lomo_ref),
    Row(
        "lomo",
        {"learning_rate": 1e-2, "clip_grad_norm": 1.0, "clip_grad_value": 2.0, "maximize": True},
        ref=lomo_ref,
        id="clip-max",
    ),
]
