"""Adam relatives from pytorch_optimizer 4.1: Ano (sign of momentum, magnitude of the gradient) and DualAdam."""

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
    r"""Ano (Kegreisz, 2025): the direction of momentum with the magnitude of the current gradient.

    Momentum only smooths the *direction* of the step, its size comes from the instantaneous gradient,
    normalised by a Yogi-style second moment, so the optimizer stays responsive in noisy landscapes.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\operatorname{sign}(g_t^2 - v_{t-1})\, g_t^2 \\
        p_t = p_{t-1} - \eta\, \frac{|g_t|\,\operatorname{sign}(m_t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    Paper: "Ano: Faster is Better in Noisy Landscapes", https://arxiv.org/abs/2508.18258.
    Follows pytorch_optimizer.Ano, which differs from the paper in two places kept here for parity:
    :math:`v_t` is bias-corrected, and ``logarithmic_schedule`` (Anolog) uses
    :math:`\beta_{1,t} = 1 - 1/\ln(\max(2, t))` (the paper: :math:`\ln(t + 2)`), so :math:`\beta_{1,t} < 0`
    for :math:`t \le 2` and the first two momentum updates overshoot the gradient. Weight decay is
    decoupled by default (``weight_decouple``, ``fixed_decay`` as in the reference).
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
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

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


@register
class DualAdam(Optimizer):
    r"""DualAdam: Adam whose step starts as a blend with the "inverse Adam" step and decays to plain Adam.

    With :math:`d_t = \sqrt{v_t / (1-\beta_2^t)} + \epsilon` and the blend rate
    :math:`r_t = \max(0, 1 - t\,s)` (``s = switch_rate``), while :math:`r_t \ge s` the step multiplies
    :math:`\hat m_t` by :math:`\operatorname{lerp}(1/d_t, d_t, r_t)`, i.e. it starts close to
    :math:`\hat m_t d_t` ("inverse Adam") and moves linearly towards Adam's :math:`\hat m_t / d_t`;
    afterwards it is Adam:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        \hat m_t = \frac{m_t}{1-\beta_1^t} \\
        p_t = p_{t-1} - \eta\, \hat m_t \cdot
        \begin{cases} (1 - r_t)/d_t + r_t d_t & r_t \ge s \\ 1/d_t & \text{otherwise} \end{cases}

    Follows pytorch_optimizer.DualAdam (no paper is cited there). Weight decay is an L2 penalty by
    default (``weight_decouple``, ``fixed_decay`` as in the reference). The switch test
    :math:`r_t \ge s` is evaluated in float32 (the reference: float64); the two can only disagree at a
    step where :math:`(t + 1) s = 1` exactly.
    """

    name = "dualadam"
    family = "adam"
    reference = "pytorch_optimizer.DualAdam"
    elementwise = True

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        switch_rate: Tunable = 1e-2,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("switch_rate", switch_rate, 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")
        hp.inverse_rate = mx.maximum(1 - hp.step * hp.switch_rate, 0.0)
        hp.use_inverse = hp.inverse_rate >= hp.switch_rate

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        m_hat = m / hp.bc1
        d = mx.sqrt(v / hp.bc2) + hp.eps
        step = mx.where(hp.use_inverse, m_hat * F.lerp(1 / d, d, hp.inverse_rate), m_hat / d)
        return p - hp.lr * step
