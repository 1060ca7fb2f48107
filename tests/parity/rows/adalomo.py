"""Parity rows for :mod:`mlx_optim.optimizers.adalomo`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.factored import FusedBackwardRef, named_runner


def adalomo_as_adafactor(params, lr, weight_decay=0.0, clip_threshold=1.0, decay_rate=-0.8, eps1=1e-30, eps2=1e-3):
    """AdaLOMO without gradient clipping is pytorch_optimizer's AdaFactor without momentum, with
    ``relative_step=False``, ``scale_parameter=True`` and a beta2 cap that never binds: the reference
    for AdaLOMO on rank-3 tensors (which pytorch_optimizer's AdaLOMO does not support)."""
    return pytorch_optimizer.AdaFactor(
        params,
        lr=lr,
        betas=(None, 0.999999),
        decay_rate=decay_rate,
        weight_decay=weight_decay,
        weight_decouple=True,
        clip_threshold=clip_threshold,
        relative_step=False,
        scale_parameter=True,
        eps1=eps1,
        eps2=eps2,
    )


def _adalomo_ref(named, kw):
    return FusedBackwardRef(pytorch_optimizer.AdaLOMO, named, **kw)


ADALOMO_SHAPES = {"a": (7,), "b": (5, 6), "d": (4, 3)}  # the reference handles only 1-D and 2-D tensors


ROWS = [
    # adalomo: pytorch_optimizer.AdaLOMO(model) via grad_norm + fused_backward, on 1-D/2-D tensors
    Row("adalomo", {"learning_rate": 1e-2}, runner=named_runner(ADALOMO_SHAPES, _adalomo_ref)),
    Row(
        "adalomo",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "loss_scale": 512.0,
            "clip_threshold": 0.5,
            "decay_rate": -0.5,
            "clip_grad_norm": 1.0,
            "clip_grad_value": 2.0,
            "eps1": 1e-20,
            "eps2": 1e-2,
        },
        runner=named_runner(ADALOMO_SHAPES, _adalomo_ref),
        id="clip-wd",
    ),
    Row(
        "adalomo",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "clip_threshold": 0.5, "decay_rate": -0.6},
        ref=adalomo_as_adafactor,
        id="rank3-vs-adafactor",
    ),
]
