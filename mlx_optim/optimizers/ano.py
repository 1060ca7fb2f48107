"""Ano (Kegreisz, 2025): the direction of momentum with the magnitude of the current gradient."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def ano_update(g: mx.array, m: mx.array, v: mx.array, *, beta1, beta2, bc2, eps):
    """One Ano step. Returns ``(delta, m, v)`` with ``p_new = p - lr * delta``.

    ``m`` is an EMA of ``g``; ``v`` a Yogi-style second moment that moves by ``(1 - beta2) g^2`` towards
    ``g^2`` (up when ``g^2 > v``, down otherwise); the step is ``|g| sign(m) / (sqrt(v / bc2) + eps)``.
    """
    m = F.lerp(m, g, 1 - beta1)
    g2 = mx.square(g)
    v = beta2 * v + (1 - beta2) * F.sign(g2 - v) * g2
    return mx.abs(g) * F.sign(m) / (mx.sqrt(v / bc2) + eps), m, v


@register
class Ano(Optimizer):
    r"""Ano: steps with the direction (sign) of the momentum and the magnitude of the current gradient.

    Momentum only smooths the *direction* of the step, its size comes from the instantaneous gradient,
    normalised by a Yogi-style second moment, so the optimizer stays responsive in noisy landscapes.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\operatorname{sign}(g_t^2 - v_{t-1})\, g_t^2 \\
        p_t = p_{t-1} - \eta\, \frac{|g_t|\,\operatorname{sign}(m_t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    Paper: "Ano: Faster is Better in Noisy Landscapes" (Kegreisz, 2025), arXiv:2508.18258. Reference:
    ``pytorch_optimizer.Ano``, same keywords and defaults. It differs from the paper in two places kept here
    for parity: :math:`v_t` is bias-corrected, and ``logarithmic_schedule`` (Anolog) uses
    :math:`\beta_{1,t} = 1 - 1/\ln(\max(2, t))` (the paper: :math:`\ln(t + 2)`), so :math:`\beta_{1,t} < 0`
    for :math:`t \le 2` and the first two momentum updates overshoot the gradient.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-4``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the momentum and of the second moment.
            Default ``(0.92, 0.99)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        logarithmic_schedule: Anolog: replace :math:`\beta_1` by the schedule :math:`1 - 1/\ln(\max(2, t))`.
            Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "ano"
    family = "sign"
    reference = "pytorch_optimizer.Ano"
    elementwise = True

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        betas: Sequence[float] = (0.92, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        logarithmic_schedule: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.logarithmic_schedule = logarithmic_schedule

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        if self.logarithmic_schedule:
            hp.beta1_t = 1 - 1 / mx.log(mx.maximum(hp.step, 2.0))
        else:
            hp.beta1_t = hp.beta1
        hp.bc2 = hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        delta, state["exp_avg"], state["exp_avg_sq"] = ano_update(
            g, state["exp_avg"], state["exp_avg_sq"], beta1=hp.beta1_t, beta2=hp.beta2, bc2=hp.bc2, eps=hp.eps
        )
        return p - hp.lr * delta
