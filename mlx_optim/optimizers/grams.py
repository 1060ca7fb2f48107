"""Grams (Cao et al., 2024, "Grams: Gradient Descent with Adaptive Momentum Scaling")."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Grams(Optimizer):
    r"""Grams (Cao et al., 2024, "Grams: Gradient Descent with Adaptive Momentum Scaling").

    The magnitude of the Adam update with the sign of the current gradient:

    .. math::
        u_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon},\quad
        p_t = p_{t-1} - \eta\, |u_t| \operatorname{sign}(g_t)

    Decoupled weight decay (not lr-free) is applied after the update is formed.
    Reference quirk kept for parity: with ``weight_decouple=False`` the L2 term is
    added to the gradient *after* it was used, so no weight decay happens at all.
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
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

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
