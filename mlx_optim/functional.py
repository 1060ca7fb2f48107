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


def ema(avg: mx.array, x: mx.array, beta: Scalar, one_minus: Scalar | None = None) -> mx.array:
    """Exponential moving average ``beta * avg + (1 - beta) * x``; pass ``hp.one_minus_<beta>`` as ``one_minus``
    (the base class's double-precision complement, computed once per step)."""
    return beta * avg + ((1 - beta) if one_minus is None else one_minus) * x


def decoupled_decay(p: mx.array, lr: Scalar, wd: Scalar, *, fixed: bool = False, ratio: Scalar = 1.0) -> mx.array:
    """AdamW-style decay ``p * (1 - wd * lr * ratio)``; ``fixed`` drops the ``lr`` factor."""
    factor = wd if fixed else wd * lr
    if not (isinstance(ratio, float) and ratio == 1.0):
        factor = factor * ratio
    return p * (1 - factor)


def coupled_decay(g: mx.array, p: mx.array, wd: Scalar) -> mx.array:
    """L2 penalty folded into the gradient: ``g + wd * p``."""
    return g + wd * p


def bias_correction(beta: Scalar, step: mx.array, one_minus: Scalar | None = None) -> mx.array:
    """``1 - beta ** step``.

    With ``one_minus`` (``hp.one_minus_<beta>``, the base class's double-precision ``1 - beta``) it is
    ``-expm1(step * log1p(-one_minus))``: within about 1e-7 relative of the reference's double-precision
    ``1 - beta ** step``. Without it, ``1 - beta ** step`` from the float32 ``beta`` is off by up to
    ``2^-24 / (1 - beta)`` relative (1.3e-5 for 0.999), and only an equally rounded ``1 - beta`` in the moment
    update makes the two errors cancel: pass ``one_minus`` to both or to neither."""
    step = step.astype(mx.float32)
    if one_minus is None:
        return 1 - mx.power(mx.array(beta, mx.float32), step)
    return mx.where(step == 0, 0.0, -mx.expm1(step * mx.log1p(-one_minus)))  # 0 * log(0) would be NaN


def rectification(beta2, step: mx.array, threshold: float, one_minus=None) -> tuple[mx.array, mx.array]:
    r"""RAdam's variance rectification: ``(rt, n_sma)``, accurate in float32.

    ``n_sma`` is the length of the approximated simple moving average and ``rt`` the
    multiplier of the adaptive step (meaningful only where ``n_sma`` reaches the
    caller's threshold; callers select with ``mx.where``).

    The textbook form :math:`\rho_\infty - 2t\beta^t/(1-\beta^t)` subtracts two numbers of size
    :math:`2/(1-\beta)` whose difference is about :math:`t`: in float32 that loses ~2% of ``rt`` near
    :math:`\rho_t = 4` for :math:`\beta_2 = 0.999` (100% for 0.9999). With :math:`a = -\log\beta`,
    :math:`\rho_t = \coth(a/2) - t \coth(ta/2) + t`, and for :math:`ta < 1` the series of coth gives
    :math:`\rho_t = t - \tfrac{a}{6}(t^2-1) + \tfrac{a^3}{360}(t^4-1) - \tfrac{a^5}{15120}(t^6-1)
    + \tfrac{a^7}{604800}(t^8-1)` without cancellation; :math:`1-\beta^t` is ``-expm1(-ta)``.
    What remains (~1e-5 relative for 0.999) is the float32 rounding of :math:`\beta_2` itself, unless
    ``one_minus`` (``hp.one_minus_beta2``, the double-precision :math:`1-\beta_2`) is given.
    """
    t = step.astype(mx.float32)
    beta2 = mx.array(beta2, mx.float32)
    c = (1 - beta2) if one_minus is None else one_minus
    a = -mx.log1p(-c)
    one_minus_bt = -mx.expm1(-t * a)
    n_sma_max = 2.0 / c - 1.0
    t2, a2 = mx.square(t), mx.square(a)
    series = t + a * (
        (1 - t2) / 6 + a2 * ((t2 * t2 - 1) / 360 + a2 * ((1 - t2 * t2 * t2) / 15120 + a2 * (t2**4 - 1) / 604800))
    )
    direct = n_sma_max - 2.0 * t * (1 - one_minus_bt) / one_minus_bt
    n_sma = mx.where(t * a < 1.0, series, direct)
    safe = mx.maximum(n_sma, 4.0)  # keeps sqrt real where the caller discards rt
    rt = mx.sqrt(one_minus_bt * (safe - 4) / (n_sma_max - 4) * (safe - 2) / safe * n_sma_max / (n_sma_max - 2))
    return rt, n_sma


def cautious_mask(update: mx.array, grad: mx.array) -> mx.array:
    """Cautious optimizers: zero the update where it disagrees with the gradient sign.

    The kept entries are rescaled by ``numel / (kept + 1)`` so the update keeps its size, computed as torch
    evaluates ``numel / tensor``: ``reciprocal(kept + 1) * numel`` (a direct division differs by one ulp now and
    then, which shows in bfloat16 updates).
    """
    mask = (update * grad > 0).astype(update.dtype)
    return update * mask * ((1.0 / (mask.sum() + 1)) * mask.size)


def centralize(g: mx.array, *, conv_only: bool = False) -> mx.array:
    """Gradient centralization: subtract the mean over all axes but the first.

    Applies to tensors with more than one dimension (more than three with ``conv_only``).
    """
    if g.ndim <= (3 if conv_only else 1):
        return g
    return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


# Above this many elements a tensor's sum of squares first reduces over the leading axes (a strided reduction,
# which MLX's CPU backend vectorizes across the last axis; a vector is viewed as rows of 256) and then over the
# last axis: 1.8 ms instead of 4.8 ms for 2048x2048 on our CPU, where a whole-tensor sum is one serial chain of
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


def lerp(start: mx.array, end: mx.array, weight: Scalar) -> mx.array:
    """``torch.lerp``: ``start + weight * (end - start)``."""
    return start + weight * (end - start)


def rms(x: mx.array) -> mx.array:
    """Root mean square of a whole tensor."""
    return mx.sqrt(mx.mean(mx.square(x)))


def ams_bound_denom(v: mx.array, eps: Scalar, v_eps: float = 1e-15) -> mx.array:
    """pytorch_optimizer's ``apply_ams_bound`` denominator ``sqrt(v + 1e-15) + eps`` (``v`` already maxed)."""
    return mx.sqrt(v + v_eps) + eps


def stable_adamw_rms(g: mx.array, v: mx.array, eps: float = 1e-16) -> mx.array:
    """StableAdamW's update scale ``max(1, sqrt(mean(g^2 / max(v, eps))))``."""
    return mx.maximum(mx.sqrt(mx.mean(mx.square(g) / mx.maximum(v, eps))), 1.0)


def sign(x: mx.array) -> mx.array:
    """``mx.sign`` without a branch: ``(x > 0) - (x < 0)``, equal to it everywhere (0 for +-0 and NaN).

    MLX's ``Sign`` is two nested selects; fused by ``mx.compile`` on the CPU into a loop over data whose signs
    are random, they mispredict: Lion-style updates ran at 8.4 ns per element against 2.3 ns with this form
    (benchmarks/suite.py; g++ keeps the selects as branches)."""
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


def sign_diff(a: mx.array, b: mx.array) -> mx.array:
    """``sign(a - b)`` as ``(a > b) - (a < b)``: equal everywhere (IEEE ``a - b`` is 0 only when ``a == b``, NaN
    when either is NaN or both are the same infinity) and one operation shallower, which helps ``mx.compile`` keep
    an update in one kernel (:mod:`mlx_optim.fusion`)."""
    return (a > b).astype(a.dtype) - (a < b).astype(a.dtype)


def softplus(x: mx.array, beta: Scalar, threshold: float = 20.0) -> mx.array:
    """``torch.nn.functional.softplus``: ``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``."""
    bx = beta * x
    return mx.where(bx > threshold, x, mx.logaddexp(bx, 0.0) / beta)


def normalize_gradient(g: mx.array, eps: float = 1e-8) -> mx.array:
    """pytorch_optimizer's ``normalize_gradient``: divide by the unbiased std (tensors with > 2 elements)."""
    if g.size <= 2:
        return g
    centered = g - mx.mean(g)
    std = mx.sqrt(mx.sum(mx.square(centered)) / (g.size - 1))
    return g / (std + eps)


def orthogonalize(p: mx.array, g: mx.array, eps: float = 1e-16) -> mx.array:
    """OrthoGrad: remove the component of ``g`` along ``p`` and restore the norm of ``g``."""
    w, gf = p.reshape(-1), g.reshape(-1)
    proj = mx.sum(w * gf) / (mx.sum(w * w) + eps)
    g_ortho = gf - proj * w
    g_ortho = g_ortho * (norm(gf) / (norm(g_ortho) + eps))
    return g_ortho.reshape(g.shape).astype(g.dtype)


def every(step: mx.array, k: int) -> mx.array:
    """``step % k == 0`` for the float32 step counter (periodic logic without Python branching)."""
    return mx.remainder(step, k) == 0


def torch_lerp(start: mx.array, end: mx.array, weight: Scalar) -> mx.array:
    """``torch.lerp`` exactly, with its two-sided formula: ``start + w (end - start)`` for ``|w| < 0.5``,
    else ``end - (end - start)(1 - w)`` (matters for weights that cross 0.5, e.g. ``1 - beta2_t``)."""
    diff = end - start
    return mx.where(mx.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def sum_of_squares(tree) -> mx.array:
    """Sum of the squared L2 norms of every array in a tree (or list), in float32."""
    from mlx.utils import tree_flatten

    # each leaf's sum keeps its dimensions and the total is reshaped once: one Squeeze per step, not per leaf
    total = sum(sum_sq(x, keepdims=True) for _, x in tree_flatten(tree))
    return total.reshape(()) if isinstance(total, mx.array) else total


def global_norm(tree) -> mx.array:
    """L2 norm of a whole tree of arrays, in float32."""
    return mx.sqrt(sum_of_squares(tree))


def ademamix_schedules(step: mx.array, t: float | None, alpha: Scalar, beta1: Scalar, beta3: Scalar):
    """AdEMAMix's warm-ups over ``t`` steps: ``alpha`` linearly, ``beta3`` in half-life space.

    Returns ``(alpha_t, beta3_t)``; the constants themselves when ``t`` is None.
    """
    if t is None:
        return alpha, beta3
    frac = step / t
    alpha_t = mx.minimum(step * alpha / t, alpha)
    log_b1, log_b3 = mx.log(beta1), mx.log(beta3)
    beta3_t = mx.minimum(mx.exp(log_b1 * log_b3 / ((1.0 - frac) * log_b3 + frac * log_b1)), beta3)
    return alpha_t, beta3_t
