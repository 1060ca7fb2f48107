"""Nero: neuron-wise normalized steps on centered, unit-norm neurons."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def neuron_norm(x: mx.array) -> mx.array:
    """Nero's per-neuron L2 norm: over all axes but the first (kept as size-1 axes); ``|x|`` for ndim <= 1."""
    if x.ndim <= 1:
        return mx.abs(x)
    return mx.sqrt(mx.sum(mx.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def neuron_center_normalize(p: mx.array, eps: Any) -> mx.array:
    """Nero's constraint: subtract each neuron's mean, then divide by its norm (+ ``eps``)."""
    p = p - mx.mean(p, axis=tuple(range(1, p.ndim)), keepdims=True)
    return p / (neuron_norm(p) + eps)


@register
class Nero(Optimizer):
    r"""Nero: neuron-wise normalized steps on centered, unit-norm neurons.

    With the per-neuron gradient norm :math:`n_t = \lVert g_t\rVert` (per row; :math:`|g_t|` for scalars and
    vectors):

    .. math::
        v_t = \beta v_{t-1} + (1-\beta) n_t^2,\quad
        p_t = \Pi\Big(p_{t-1} - \eta\,s\,\frac{g_t}{\sqrt{v_t/(1-\beta^t)}+\epsilon}\Big)

    where :math:`\Pi` (``constraints=True``, tensors with more than one dimension) centers each neuron and
    scales it to unit norm, and :math:`s` is the mean neuron norm of the initial (projected) parameter, 0.01
    if that is 0. As in the reference the projection is also applied to the parameter before the first step,
    and NaNs of the normalized gradient become 0.

    Paper: Liu et al., "Learning by Turning: Neural Architecture Aware Optimisation", ICML 2021,
    arXiv:2102.07227.

    Reference: ``pytorch_optimizer.Nero`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta` (relative to the neuron scale :math:`s`), a float or a schedule
            (a callable of the step). Default ``0.01``.
        beta: Decay rate of the per-neuron squared-gradient-norm EMA, in [0, 1]. Default ``0.999``.
        constraints: Keep the neurons of tensors with ``ndim > 1`` centered and at unit norm. Default ``True``.
        eps: Term added to the denominator and to the neuron norm in the projection (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "nero"
    family = "sgd"
    reference = "pytorch_optimizer.Nero"

    def __init__(
        self,
        learning_rate: Tunable = 0.01,
        beta: Tunable = 0.999,
        constraints: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0)
        self._hyper("eps", eps, 0.0)
        self.constraints = constraints

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg_sq"] = self.zeros(parameter, neuron_norm(parameter).shape)
        state["scale"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        hp.bc = F.bias_correction(hp.beta, hp.step)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        constrain = self.constraints and p.ndim > 1
        if constrain:
            p = mx.where(hp.first, neuron_center_normalize(p, hp.eps), p)
        scale0 = mx.mean(neuron_norm(p)).astype(mx.float32)
        scale = mx.where(hp.first, mx.where(scale0 == 0, 0.01, scale0), state["scale"])
        state["scale"] = scale
        n = neuron_norm(g)
        v = hp.beta * state["exp_avg_sq"] + (1.0 - hp.beta) * n * n
        state["exp_avg_sq"] = v
        g_normed = mx.nan_to_num(g / (mx.sqrt(v / hp.bc) + hp.eps), nan=0.0)
        p = p - hp.lr * scale * g_normed
        return neuron_center_normalize(p, hp.eps) if constrain else p
