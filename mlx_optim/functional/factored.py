"""Factored second moments (Adafactor, CAME, AdaLOMO) and RMS clipping."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlx_optim.functional.moments import torch_lerp
from mlx_optim.functional.norms import rms


def factored_rsqrt(row: mx.array, col: mx.array) -> mx.array:
    r"""Adafactor's factored inverse square root of the second moment (pytorch_optimizer's ``approximate_sq_grad``).

    ``row`` has the gradient's shape without its last axis, ``col`` without its second-to-last one:

    .. math:: \hat V^{-1/2}_{ij} = \big(R_i / \operatorname{mean}(R)\big)^{-1/2}\, C_j^{-1/2}
    """
    r = mx.rsqrt(row / mx.mean(row, axis=-1, keepdims=True))
    return mx.expand_dims(r, -1) * mx.expand_dims(mx.rsqrt(col), -2)


def clip_by_rms(update: mx.array, threshold: Any) -> mx.array:
    """Adafactor's update clipping: ``u / max(1, rms(u) / threshold)``."""
    return update / mx.maximum(rms(update) / threshold, 1.0)


def factored_moments(update: mx.array, row: mx.array, col: mx.array, weight: Any) -> tuple[mx.array, mx.array]:
    """Row/column EMAs ``lerp(row, mean_{-1}(update), w)``, ``lerp(col, mean_{-2}(update), w)``."""
    return torch_lerp(row, mx.mean(update, axis=-1), weight), torch_lerp(col, mx.mean(update, axis=-2), weight)
