"""DeMo (Peng et al., 2024): decoupled momentum optimization."""

from __future__ import annotations

import math
from functools import cache

import mlx.core as mx
import numpy as np

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def get_smaller_split(n: int, close_to: int) -> int:
    """The block size DeMo uses for a dimension of size ``n``: ``close_to`` if it divides ``n``, else the largest
    divisor below it, except that the smallest divisor (1) is returned when it already exceeds, and ``n``
    itself when ``n <= close_to`` (pytorch_optimizer's ``get_smaller_split``)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    divisors = sorted(set(small + [n // d for d in small]))
    for i, d in enumerate(divisors):
        if d == close_to:
            return d
        if d > close_to:
            return d if i == 0 else divisors[i - 1]
    return n


@cache
def _dct_np(n: int) -> np.ndarray:
    i = np.arange(n)[:, None]
    k = np.arange(n)[None, :]
    f = np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
    f[:, 0] = np.sqrt(1.0 / n)
    return f


def dct_matrix(n: int, dtype: mx.Dtype = mx.float32) -> mx.array:
    """The orthonormal DCT-II matrix ``D`` with ``x @ D`` the DCT of ``x``'s rows (``D[i, k]`` is basis ``k`` at
    sample ``i``; its inverse is ``D.T``), computed in float64 and rounded (the reference builds it by FFT)."""
    return mx.array(_dct_np(n)).astype(dtype)


def _top_k(x: mx.array, k: int) -> mx.array:
    """Keep the ``k`` largest-magnitude entries along the last axis, zero the others."""
    if k >= x.shape[-1]:
        return x
    idx = mx.argpartition(-mx.abs(x), kth=k - 1, axis=-1)[..., :k]
    return mx.put_along_axis(mx.zeros_like(x), idx, mx.take_along_axis(x, idx, axis=-1), axis=-1)


def dct_compress(x: mx.array, chunk: int, top_k: int) -> mx.array:
    """DeMo's transmitted part of ``x`` (1-D or 2-D): split into blocks of ``get_smaller_split(dim, chunk)`` per
    dimension, DCT each block (orthonormal), keep the ``top_k`` largest-magnitude coefficients per block, and
    transform back."""
    k = max(1, top_k)
    if x.ndim == 1:
        n = get_smaller_split(x.shape[0], chunk)
        d = dct_matrix(n, x.dtype)
        coef = _top_k(x.reshape(-1, n) @ d, k)
        return (coef @ d.T).reshape(x.shape)
    n1, n2 = get_smaller_split(x.shape[0], chunk), get_smaller_split(x.shape[1], chunk)
    d1, d2 = dct_matrix(n1, x.dtype), dct_matrix(n2, x.dtype)
    blocks = x.reshape(x.shape[0] // n1, n1, x.shape[1] // n2, n2)
    # pairwise contractions, no multi-operand mx.einsum (whose path search MLX runs at every trace)
    coef = mx.tensordot(mx.tensordot(blocks, d1, axes=([1], [0])), d2, axes=([2], [0]))  # yhxw,hb,wd->yxbd
    y, xx = coef.shape[:2]
    coef = _top_k(coef.reshape(y, xx, n1 * n2), k).reshape(y, xx, n1, n2)
    out = mx.tensordot(mx.tensordot(coef, d1, axes=([2], [1])), d2, axes=([2], [1]))  # yxhw,bh,dw->yxbd
    return mx.transpose(out, (0, 2, 1, 3)).reshape(x.shape)


@register
class DeMo(Optimizer):
    r"""DeMo: sign SGD on the DCT top-k part of a residual momentum buffer, the rest kept for later steps.

    Accumulate the gradient in a residual buffer, send only its DCT top-k part, step by the sign of what was
    sent:

    .. math::
        \theta \leftarrow \theta (1 - \eta\lambda),\quad
        \delta \leftarrow \beta\delta + \eta g,\quad
        q = \mathcal{C}(\delta),\quad \delta \leftarrow \delta - q,\quad
        \theta \leftarrow \theta - \eta\,\operatorname{sign}(q)

    with :math:`\mathcal{C}` = :func:`dct_compress` (blocks of at most ``compression_chunk`` per dimension,
    ``compression_top_k`` coefficients kept per block), :math:`\beta` = ``compression_decay``. As in the
    reference, parameters must be 1-D or 2-D (others raise ``ValueError``); weight decay is always decoupled.
    Small tensors whose blocks hold no more than ``compression_top_k`` coefficients are sent whole
    (:math:`q = \delta` up to the rounding of the DCT round trip).

    Paper: "DeMo: Decoupled Momentum Optimization" (Peng et al., 2024), arXiv:2411.19870. Reference:
    ``pytorch_optimizer.DeMo`` with world size 1: with several processes the reference all-gathers the sparse
    coefficients and decodes their mean, which this single-process port does not do (its ``process_group``,
    ``foreach`` knobs and the ``data_transmit``/``data_receive`` counters are dropped). The DCT matrices are
    built in float64 and rounded (the reference uses an FFT); where a decoded value is mathematically 0 (one
    kept coefficient of a block size with an odd factor) its sign is rounding noise in both implementations.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        compression_decay (float): Decay rate :math:`\beta` in [0, 1) of the residual buffer. Default ``0.999``.
        compression_top_k (int): DCT coefficients (> 0) kept per block. Default ``32``.
        compression_chunk (int): Maximum block size (> 0) per dimension. Default ``64``.
        weight_decay (float): Decoupled weight decay :math:`\lambda` (>= 0). Default ``0.0``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "demo"
    family = "sign"
    reference = "pytorch_optimizer.DeMo"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        compression_decay: float = 0.999,
        compression_top_k: int = 32,
        compression_chunk: int = 64,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("compression_decay", compression_decay, 0.0, 1.0, "[)")
        for name, v in (("compression_top_k", compression_top_k), ("compression_chunk", compression_chunk)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"DeMo: {name}={v!r} must be a positive integer")
            self._check(name, v, 0, None, "(]")
        self.compression_top_k = compression_top_k
        self.compression_chunk = compression_chunk

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if parameter.ndim not in (1, 2):
            raise ValueError(
                f"DeMo: parameter '{self._leaf_path}' has shape {tuple(parameter.shape)}; "
                "its DCT compression handles 1-D and 2-D parameters only"
            )
        state["delta"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=True)
        delta = state["delta"] * hp.compression_decay + hp.lr * g
        sent = dct_compress(delta, self.compression_chunk, self.compression_top_k)
        state["delta"] = delta - sent
        return p - hp.lr * F.sign(sent)
