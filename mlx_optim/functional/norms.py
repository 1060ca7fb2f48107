"""Norms and whole-tensor sums (float32-accurate for large tensors), clipping and normalization."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.functional.types import Scalar

# Above this many elements a tensor's sum of squares first reduces over the leading axes (a strided reduction,
# which MLX's CPU backend vectorizes across the last axis; a vector is viewed as rows of 256) and then over the
# last axis: faster for large tensors on the CPU, where a whole-tensor sum is one serial chain of
# float32 additions, and more accurate for the same reason (tests/test_base.py: within 1e-6 of the exact sum,
# against about 2e-5 for the serial sum of 1e5 squares). Below it the extra operation per leaf costs more than
# it saves.
SUM_SQ_SPLIT = 65536


def sum_all(x: mx.array, keepdims: bool = False) -> mx.array:
    """Sum of a whole tensor, in float32 (see :data:`SUM_SQ_SPLIT`); ``keepdims``: shape ``(1,) * x.ndim``."""
    x = x.astype(mx.float32)
    if x.size >= SUM_SQ_SPLIT:
        if x.ndim >= 2 and x.shape[-1] > 1:
            lead = mx.sum(x, axis=tuple(range(x.ndim - 1)), keepdims=keepdims)
            return mx.sum(lead, axis=-1, keepdims=keepdims)
        if x.size % 256 == 0:
            total = mx.sum(mx.sum(x.reshape(-1, 256), axis=0), keepdims=keepdims)
            return total.reshape((1,) * x.ndim) if keepdims and x.ndim != 1 else total
    return mx.sum(x, keepdims=keepdims)


def sum_sq(x: mx.array, keepdims: bool = False) -> mx.array:
    """Sum of squares of a whole tensor, in float32 (see :data:`SUM_SQ_SPLIT`)."""
    return sum_all(mx.square(x.astype(mx.float32)), keepdims)


def norm(x: mx.array) -> mx.array:
    """Frobenius / L2 norm of a whole tensor, in float32."""
    return mx.sqrt(sum_sq(x))


def norm_kd(x: mx.array) -> mx.array:
    """:func:`norm` with the tensor's number of dimensions kept (shape ``(1,) * x.ndim``), so that it broadcasts
    against ``x`` without a ``Squeeze``: under ``mx.compile`` a whole-tensor ``mx.sum`` is a reduction plus a
    squeeze, two operations per leaf, and this saves one (:mod:`mlx_optim.fusion`). Same value as :func:`norm`."""
    return mx.sqrt(sum_sq(x, keepdims=True))


def unit_norm(x: mx.array) -> mx.array:
    """pytorch_optimizer's ``unit_norm``: whole-tensor norm for ndim <= 1, axis 1 for 2-D and 3-D tensors,
    axes 1.. for ndim >= 4 (kept dims, so it broadcasts against ``x``)."""
    if x.ndim <= 1:
        return mx.sqrt(mx.sum(mx.square(x)))
    axes = 1 if x.ndim in (2, 3) else tuple(range(1, x.ndim))
    return mx.sqrt(mx.sum(mx.square(x), axis=axes, keepdims=True))


def agc(p: mx.array, g: mx.array, agc_eps: Scalar = 1e-3, clip_val: Scalar = 1e-2, eps: float = 1e-6) -> mx.array:
    """Adaptive gradient clipping (Brock et al. 2021) as pytorch_optimizer's ``agc``."""
    max_norm = mx.maximum(unit_norm(p), agc_eps) * clip_val
    g_norm = mx.maximum(unit_norm(g), eps)
    return mx.where(g_norm > max_norm, g * (max_norm / g_norm), g)


def rms(x: mx.array) -> mx.array:
    """Root mean square of a whole tensor."""
    return mx.sqrt(mx.mean(mx.square(x)))


def normalize_gradient(g: mx.array, eps: float = 1e-8) -> mx.array:
    """pytorch_optimizer's ``normalize_gradient``: divide by the unbiased std (tensors with > 2 elements)."""
    if g.size <= 2:
        return g
    centered = g - mx.mean(g)
    std = mx.sqrt(mx.sum(mx.square(centered)) / (g.size - 1))
    return g / (std + eps)


def sum_of_squares(tree) -> mx.array:
    """Sum of the squared L2 norms of every array in a tree (or list), in float32."""
    from mlx.utils import tree_flatten

    # each leaf's sum keeps its dimensions and the total is reshaped once: one Squeeze per step, not per leaf
    total = sum(sum_sq(x, keepdims=True) for _, x in tree_flatten(tree))
    return total.reshape(()) if isinstance(total, mx.array) else total


def global_norm(tree) -> mx.array:
    """L2 norm of a whole tree of arrays, in float32."""
    return mx.sqrt(sum_of_squares(tree))


def normalize_dim0(x: mx.array, eps: float = 1e-12) -> mx.array:
    """``torch.nn.functional.normalize(x, p=2, dim=0)``: divide by the L2 norm along the first axis."""
    if x.ndim == 0:
        return x / mx.maximum(mx.abs(x), eps)
    n = mx.sqrt(mx.sum(mx.square(x), axis=0, keepdims=True))
    return x / mx.maximum(n, eps)
