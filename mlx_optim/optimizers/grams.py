"""Grams (Cao et al., 2024): gradient descent with adaptive momentum scaling."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Grams(Optimizer):
    r"""Grams: the magnitude of the Adam update with the sign of the current gradient.

    .. math::
        u_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon},\quad
        p_t = p_{t-1} - \eta\, |u_t| \operatorname{sign}(g_t)

    with :math:`m_t`, :math:`v_t` Adam's moment EMAs. Decoupled weight decay (scaled by the learning rate) is
    applied after the update is formed.

    Paper: "Grams: Gradient Descent with Adaptive Momentum Scaling" (Cao et al., 2024). Reference:
    ``pytorch_optimizer.Grams``, same keywords and defaults. Reference quirk kept for parity: with
    ``weight_decouple=False`` the L2 term is added to the gradient *after* it was used, so no weight decay
    happens at all.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled decay ``p <- p (1 - lr wd)``; ``False`` applies no decay (reference quirk).
            Default ``True``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "grams"
    family = "adam"
    reference = "pytorch_optimizer.Grams"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        update = mx.abs(m / hp.bc1 / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)) * F.sign(g)
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True)
        return p - hp.lr * update
