"""Shared optimizer math as pure functions of arrays.

Every function here takes and returns ``mx.array`` values (scalars may be Python
numbers or 0-d arrays) and has no side effects, so the same function serves the
eager path, the ``mx.compile``d path and, later, a fused kernel's reference.
The base class :class:`mlx_optim.Optimizer` wraps them with each optimizer's
settings; optimizers call the wrappers, tests may call these directly.
"""

from __future__ import annotations

import mlx.core as mx

Scalar = float | mx.array


def ema(avg: mx.array, x: mx.array, beta: Scalar) -> mx.array:
    """Exponential moving average ``beta * avg + (1 - beta) * x``."""
    return beta * avg + (1 - beta) * x


def decoupled_decay(p: mx.array, lr: Scalar, wd: Scalar, *, fixed: bool = False, ratio: Scalar = 1.0) -> mx.array:
    """AdamW-style decay ``p * (1 - wd * lr * ratio)``; ``fixed`` drops the ``lr`` factor."""
    factor = wd if fixed else wd * lr
    if not (isinstance(ratio, float) and ratio == 1.0):
        factor = factor * ratio
    return p * (1 - factor)


def coupled_decay(g: mx.array, p: mx.array, wd: Scalar) -> mx.array:
    """L2 penalty folded into the gradient: ``g + wd * p``."""
    return g + wd * p


def bias_correction(beta: Scalar, step: mx.array) -> mx.array:
    """``1 - beta ** step`` in float32."""
    return 1 - mx.power(mx.array(beta, mx.float32), step.astype(mx.float32))


def rectification(beta2: Scalar, step: mx.array, threshold: float) -> tuple[mx.array, mx.array]:
    """RAdam's variance rectification term.

    Returns ``(rt, n_sma)`` where ``n_sma`` is the length of the approximated
    simple moving average and ``rt`` the multiplier of the adaptive step
    (meaningful only where ``n_sma >= threshold``; callers select with ``mx.where``).
    """
    t = step.astype(mx.float32)
    n_sma_max = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = mx.power(mx.array(beta2, mx.float32), t)
    n_sma = n_sma_max - 2.0 * t * beta2_t / (1.0 - beta2_t)
    safe = mx.maximum(n_sma, 4.0)  # keeps sqrt real where the caller discards rt
    rt = mx.sqrt((1.0 - beta2_t) * (safe - 4) / (n_sma_max - 4) * (safe - 2) / safe * n_sma_max / (n_sma_max - 2))
    return rt, n_sma


def cautious_mask(update: mx.array, grad: mx.array) -> mx.array:
    """Cautious optimizers: zero the update where it disagrees with the gradient sign.

    The kept entries are rescaled by ``numel / (kept + 1)`` so the update keeps its size.
    """
    mask = (update * grad > 0).astype(update.dtype)
    return update * mask * (mask.size / (mask.sum() + 1))


def centralize(g: mx.array, *, conv_only: bool = False) -> mx.array:
    """Gradient centralization: subtract the mean over all axes but the first.

    Applies to tensors with more than one dimension (more than three with ``conv_only``).
    """
    if g.ndim <= (3 if conv_only else 1):
        return g
    return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


def norm(x: mx.array) -> mx.array:
    """Frobenius / L2 norm of a whole tensor, in float32."""
    return mx.sqrt(mx.sum(mx.square(x.astype(mx.float32))))


def unit_norm(x: mx.array, eps: float = 1e-6) -> mx.array:
    """Norm used by AGC: per output unit (all axes but the first) for ndim > 1, else whole."""
    if x.ndim <= 1:
        return mx.sqrt(mx.sum(mx.square(x)))
    return mx.sqrt(mx.sum(mx.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def agc(p: mx.array, g: mx.array, *, eps: float = 1e-3, clip_val: float = 1e-2, norm_eps: float = 1e-6) -> mx.array:
    """Adaptive gradient clipping (Brock et al. 2021), pytorch_optimizer's ``agc``."""
    p_norm = mx.maximum(unit_norm(p), eps)
    g_norm = unit_norm(g)
    max_norm = p_norm * clip_val
    clipped = g * (max_norm / mx.maximum(g_norm, norm_eps))
    return mx.where(g_norm > max_norm, clipped, g)
