"""EXAdam (Adly, 2024): Adam with adaptive cross-moments."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def exadam_update(g, m, v, *, beta1_t, beta2_t, bc1, bc2, eps) -> tuple[mx.array, mx.array]:
    """EXAdam's direction as ``(numerator, denominator)``: cross-moment corrected moments and the
    gradient-accelerated numerator."""
    d1 = 1.0 + v / (v + eps) * beta2_t
    m_sq = mx.square(m)
    d2 = 1.0 + m_sq / (m_sq + eps) * beta1_t
    numerator = d1 * (m + g) / bc1  # the reference's m / bc1 * d1 + d1 * (g / bc1) up to rounding: 2 divisions fewer
    return numerator, mx.sqrt(d2 * (v / bc2)) + eps


@register
class EXAdam(Optimizer):
    r"""EXAdam: Adam with cross-moment bias corrections and a gradient-accelerated numerator.

    .. math::
        d_1 = 1 + \beta_2^t \frac{v_t}{v_t+\epsilon},\quad d_2 = 1 + \beta_1^t \frac{m_t^2}{m_t^2+\epsilon},\quad
        \hat m_t = \frac{m_t d_1}{1-\beta_1^t},\quad \hat v_t = \frac{v_t d_2}{1-\beta_2^t} \\
        p_t = p_{t-1} - \eta \frac{\hat m_t + d_1 g_t/(1-\beta_1^t)}{\sqrt{\hat v_t} + \epsilon}

    with :math:`m_t`, :math:`v_t` Adam's moment EMAs. Decoupled weight decay by default.

    Paper: "EXAdam: The Power of Adaptive Cross-Moments" (Adly, 2024). Reference: ``pytorch_optimizer.EXAdam``,
    same keywords and defaults; as in the reference the learning rate is not scaled by the paper's
    :math:`\sqrt{\log t}` schedule (pass a schedule as ``learning_rate`` for it).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) in the cross-moment corrections and the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "exadam"
    family = "adam"
    reference = "pytorch_optimizer.EXAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")
        hp.beta1_t, hp.beta2_t = 1.0 - hp.bc1, 1.0 - hp.bc2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        numerator, denom = exadam_update(
            g, m, v, beta1_t=hp.beta1_t, beta2_t=hp.beta2_t, bc1=hp.bc1, bc2=hp.bc2, eps=hp.eps
        )
        # lr / denom first (not lr * (numerator / denom), a rounding apart): the DFS of mx.compile then reaches m
        # through the denominator's m^2 before the numerator, so m joins the update's kernel (mlx_optim.fusion)
        return p - (hp.lr / denom) * numerator
