"""TRAC: parameter-free scaling of any optimizer's updates (pytorch_optimizer semantics)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map

from mlx_optim import functional as F
from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Wrapper

__all__ = ["TRAC", "erf1994_coefficients", "erf_imag"]


def erf1994_coefficients(num_coefs: int = 128) -> tuple[np.ndarray, float]:
    """The coefficients ``a`` (float32, highest degree first) and ``L`` of Weideman's (1994) rational
    approximation of the Faddeeva function, as pytorch_optimizer's ``ERF1994.__init__`` (computed in float64
    with NumPy and rounded; the reference computes them in float32)."""
    n = num_coefs
    m = 2 * n
    m2 = 2 * m
    k = np.linspace(-m + 1, m - 1, m2 - 1)
    ell = math.sqrt(n / math.sqrt(2.0))
    theta = k * np.pi / m
    t = ell * np.tan(theta / 2.0)
    f = np.exp(-(t**2)) * (ell**2 + t**2)
    f = np.concatenate([np.zeros(1), f])
    a = np.fft.fft(np.fft.fftshift(f)).real / m2
    a = np.flipud(a[1 : n + 1])
    return a.astype(np.float32), float(np.float32(ell))


def erf_imag(x: mx.array, coefs: mx.array, ell: float) -> mx.array:
    """``Im(erf(i x))`` (= erfi(x)) for real ``x`` by pytorch_optimizer's ``ERF1994`` in complex64.

    ``erf(z) = 1 - exp(log(w(i z)) - z^2)`` with Weideman's ``w`` (``coefs`` from :func:`erf1994_coefficients`),
    evaluated at :math:`z = i|x|` and given the sign of ``x``, step by step as the reference.
    """
    x = x.astype(mx.float32)
    sign = F.sign(x)
    ax = mx.abs(x)
    z = mx.zeros_like(ax) + 1j * ax  # complex(|Re|, |Im|) of i x
    zi = z * 1j
    iz = 1j * zi
    lp, ln = ell + iz, ell - iz
    zz = lp / ln
    n = coefs.shape[0]
    powers = mx.cumprod(mx.broadcast_to(zz[..., None], (*zz.shape, n - 1)), axis=-1)
    p = mx.sum(powers * coefs[:-1][::-1], axis=-1) + coefs[-1]
    w = 2 * p / (ln * ln) + (1.0 / math.sqrt(math.pi)) / ln
    out = 1 - mx.exp(mx.log(w) - z * z)
    return mx.imag(out) * sign


@register
@wrapper_args
class TRAC(Wrapper):
    r"""TRAC: a wrapper that scales the inner optimizer's updates by a parameter-free factor tuned online.

    With :math:`\theta_\text{ref}` the initial parameters, :math:`u_t` the inner optimizer's update at step
    :math:`t`, :math:`g_t` the gradient and :math:`s_{t-1}` the previous scale (0 at the start),

    .. math::
        \Delta_t = \frac{\theta_{t-1} - \theta_\text{ref}}{s_{t-1} + \epsilon},\quad
        h_t = \langle \Delta_t, g_t\rangle,\quad
        v_k \leftarrow \beta_k^2 v_k + h_t^2,\quad \sigma_k \leftarrow \beta_k \sigma_k - h_t,

    .. math::
        s_t = \sum_k \frac{s_\text{prev}}{\operatorname{erfi}(1/\sqrt 2)}
              \operatorname{erfi}\Big(\frac{\sigma_k}{\sqrt{2 v_k} + \epsilon}\Big),\quad
        \theta_t = \theta_\text{ref} + \max(s_t, 0)\,(\Delta_t + u_t)

    (:math:`\sigma_k` starts at :math:`10^{-8}`, :math:`v_k` at 0, one pair per beta; ``h`` sums over all
    parameters). ``erfi`` is the reference's ``ERF1994`` rational approximation with ``num_coefs`` terms, in
    complex64 (:func:`erf_imag`). Global state: ``betas``, ``s``, ``variance``, ``sigma``; per-parameter slot
    ``theta_ref`` (float32 for bf16/fp16 parameters). As in the reference, the scale starts near
    ``6 * s_prev`` and grows while the updates keep agreeing with the gradients.

    Paper: Muppidi et al., "Fast TRAC: A Parameter-Free Optimizer for Lifelong Reinforcement Learning",
    NeurIPS 2024, arXiv:2405.16642.

    Reference: ``pytorch_optimizer.TRAC`` (parity-checked). Difference: the ``ERF1994`` coefficients are
    computed in float64 and rounded (the reference computes them in float32).

    Args:
        betas: Decay rates :math:`\beta_k` of the scale's statistics, one pair per value (not validated, as in
            the reference). Default ``(0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999)``.
        num_coefs: Number of terms of the ``erfi`` approximation (a positive integer). Default ``128``.
        s_prev: Initial scale factor :math:`s_\text{prev}` (>= 0). Default ``1e-8``.
        eps: Term added to the denominators (>= 0). Default ``1e-8``.
        state_dtype: dtype of the reference parameters (keyword-only); ``None``: float32 for
            bfloat16/float16 parameters, the parameter's dtype otherwise. The inner optimizer's state follows its
            own ``state_dtype``. Default ``None``.
    """

    name = "trac"
    reference = "pytorch_optimizer.TRAC"

    def __init__(
        self,
        optimizer: Any,
        betas: Sequence[float] = (0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999),
        num_coefs: int = 128,
        s_prev: float = 1e-8,
        eps: float = 1e-8,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        if isinstance(num_coefs, bool) or not isinstance(num_coefs, int) or num_coefs < 1:
            raise ValueError(f"TRAC: num_coefs={num_coefs!r} must be a positive integer")
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self._hyper("s_prev", s_prev, 0.0)
        self._hyper("eps", eps, 0.0)
        betas = tuple(float(b) for b in betas)
        if not betas:
            raise ValueError("TRAC: betas must not be empty")
        self.num_coefs = num_coefs
        coefs, self._ell = erf1994_coefficients(num_coefs)
        self._coefs = mx.array(coefs)
        self._state["betas"] = mx.array(betas, mx.float32)
        self._state["s"] = mx.zeros((), mx.float32)
        self._state["variance"] = mx.zeros((len(betas),), mx.float32)
        self._state["sigma"] = mx.full((len(betas),), 1e-8, mx.float32)

    def _cdt(self, p: mx.array) -> mx.Dtype:
        return self.state_dtype or self.compute_dtype(p)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["theta_ref"] = parameter.astype(self._cdt(parameter))

    def step_scalars(self, hp) -> None:
        hp.f_term = hp.s_prev / erf_imag(mx.array(1.0 / math.sqrt(2.0)), self._coefs, self._ell)

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        hp, st, slots = self.hp, self._state, self._state["slots"]
        stepped = self.inner_apply(gradients, params, loss)
        denom = st["s"] + hp.eps
        deltas = tree_map(
            lambda p, slot: (p.astype(slot["theta_ref"].dtype) - slot["theta_ref"]) / denom, params, slots
        )
        dots = [mx.sum(d * g.astype(d.dtype)) for (_, d), (_, g) in zip(tree_flatten(deltas), tree_flatten(gradients))]
        h = sum(dots[1:], dots[0]).astype(mx.float32)
        betas = st["betas"]
        variance = st["variance"] * mx.square(betas) + mx.square(h)
        sigma = st["sigma"] * betas - h
        term = erf_imag(sigma / (mx.sqrt(2.0 * variance) + hp.eps), self._coefs, self._ell) * hp.f_term
        s = mx.sum(term)
        st["variance"], st["sigma"], st["s"] = variance, sigma, s
        scale = mx.maximum(s, 0.0)

        def leaf(new: mx.array, p: mx.array, d: mx.array, slot: dict) -> mx.array:
            ref = slot["theta_ref"]
            update = new.astype(ref.dtype) - p.astype(ref.dtype)
            return (ref + (d + update) * scale).astype(p.dtype)

        return tree_map(leaf, stepped, params, deltas, slots)
