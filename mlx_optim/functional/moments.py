"""Moment estimates: EMAs, bias corrections, RAdam rectification, interpolation, momentum buffers."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.functional.types import Scalar


def ema(avg: mx.array, x: mx.array, beta: Scalar, one_minus: Scalar | None = None) -> mx.array:
    """Exponential moving average ``beta * avg + (1 - beta) * x``; pass ``hp.one_minus_<beta>`` as ``one_minus``
    (the base class's double-precision complement, computed once per step)."""
    return beta * avg + ((1 - beta) if one_minus is None else one_minus) * x


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


def rectified_scale(
    beta2, step: mx.array, threshold: float, degenerated_to_sgd: bool, one_minus=None
) -> tuple[mx.array, mx.array]:
    """RAdam's step-size factor and whether the step is rectified: :math:`r_t` once the SMA length reaches
    ``threshold``, before that 1 (``degenerated_to_sgd``: an SGD-like step) or -1 (the reference's "skip" marker)."""
    rt, n_sma = rectification(beta2, step, threshold, one_minus)
    rectified = n_sma >= threshold
    return mx.where(rectified, rt, 1.0 if degenerated_to_sgd else -1.0), rectified


def lerp(start: mx.array, end: mx.array, weight: Scalar) -> mx.array:
    """``torch.lerp``: ``start + weight * (end - start)``."""
    return start + weight * (end - start)


def ams_bound_denom(v: mx.array, eps: Scalar, v_eps: float = 1e-15) -> mx.array:
    """pytorch_optimizer's ``apply_ams_bound`` denominator ``sqrt(v + 1e-15) + eps`` (``v`` already maxed)."""
    return mx.sqrt(v + v_eps) + eps


def stable_adamw_rms(g: mx.array, v: mx.array, eps: float = 1e-16) -> mx.array:
    """StableAdamW's update scale ``max(1, sqrt(mean(g^2 / max(v, eps))))``."""
    return mx.maximum(mx.sqrt(mx.mean(mx.square(g) / mx.maximum(v, eps))), 1.0)


def torch_lerp(start: mx.array, end: mx.array, weight: Scalar) -> mx.array:
    """``torch.lerp`` exactly, with its two-sided formula: ``start + w (end - start)`` for ``|w| < 0.5``,
    else ``end - (end - start)(1 - w)`` (matters for weights that cross 0.5, e.g. ``1 - beta2_t``)."""
    diff = end - start
    return mx.where(mx.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


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


def momentum_buffer(buf: mx.array, d_p: mx.array, momentum, dampening) -> mx.array:
    """``buf <- momentum * buf + (1 - dampening) * d_p`` (callers pass dampening 0 on the first step)."""
    return momentum * buf + (1 - dampening) * d_p


def rectified_direction(rectified: mx.array, step_size: mx.array, adaptive: mx.array, m: mx.array) -> mx.array:
    """RAdam's update direction: ``adaptive`` (``m / (sqrt(v) + eps)``) where the step is rectified, else ``m``
    for an SGD-like step (``step_size > 0``) or 0 for a skipped one (:func:`rectified_scale`'s -1 marker)."""
    return mx.where(rectified, adaptive, mx.where(step_size > 0, m, 0.0))
