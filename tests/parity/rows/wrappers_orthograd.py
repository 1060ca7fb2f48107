"""Parity rows for :mod:`mlx_optim.wrappers.orthograd`."""

from __future__ import annotations

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Row
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs


def torch_orthograd(params, optimizer, lr=None, optimizer_kwargs=None):
    import pytorch_optimizer

    inner = _torch_class(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
    return pytorch_optimizer.OrthoGrad(inner)


ROWS = [
    # OrthoGrad: pytorch_optimizer.OrthoGrad around the same torch optimizer.
    Row("orthograd", {"optimizer": "sgd", "learning_rate": 0.1}, ref=torch_orthograd),
    Row(
        "orthograd",
        {"optimizer": "adamw", "learning_rate": 1e-2, "optimizer_kwargs": {"weight_decay": 0.1, "amsgrad": True}},
        ref=torch_orthograd,
        id="adamw",
    ),
]
