"""RMSprop with torch.optim semantics."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class RMSprop(Optimizer):
    r"""RMSprop: gradient steps divided by a running root mean square of the gradients, as ``torch.optim.RMSprop``.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,\quad
        d_t = \sqrt{v_t - \bar g_t^2 \text{ (centered)}} + \epsilon,\quad
        b_t = \mu b_{t-1} + g_t / d_t,\quad p_t = p_{t-1} - \eta\, b_t

    with :math:`\bar g_t` the EMA of the gradient (``centered`` only) and :math:`b_t = g_t / d_t` without
    momentum. Weight decay is L2, added to the gradient.

    Paper: Hinton, Srivastava & Swersky, "Neural Networks for Machine Learning", lecture 6e (Coursera, 2012).

    Reference: ``torch.optim.RMSprop`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-2``.
        alpha: Decay rate :math:`\alpha` of the squared-gradient average (>= 0). Default ``0.99``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        weight_decay: L2 penalty added to the gradient (>= 0). Default ``0.0``.
        momentum: Momentum factor :math:`\mu` (>= 0); 0 disables the momentum buffer. Default ``0.0``.
        centered: Divide by an estimate of the gradient's variance (subtract the squared gradient EMA).
            Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated; keyword-only).
            Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "rmsprop"
    family = "adaptive"
    reference = "torch.optim.RMSprop"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        alpha: Tunable = 0.99,
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        momentum: Tunable = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("alpha", alpha, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum", momentum, 0.0)
        self.centered = centered
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["square_avg"] = self.zeros(parameter)
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)
        if self.centered:
            state["grad_avg"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        v = hp.alpha * state["square_avg"] + hp.one_minus_alpha * mx.square(g)
        state["square_avg"] = v
        if self.centered:
            g_avg = hp.alpha * state["grad_avg"] + hp.one_minus_alpha * g
            state["grad_avg"] = g_avg
            v = v - mx.square(g_avg)
        step = g / (mx.sqrt(v) + hp.eps)
        if self.use_momentum:
            step = hp.momentum * state["momentum_buffer"] + step
            state["momentum_buffer"] = step
        return p - hp.lr * step
