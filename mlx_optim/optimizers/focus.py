"""FOCUS: First Order Concentrated Updating Scheme."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class FOCUS(Optimizer):
    r"""FOCUS: sign momentum plus a sign attraction toward the running average of the parameters.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        \bar p_t = \beta_2 \bar p_{t-1} + (1-\beta_2) p_{t-1},\quad \hat p_t = \bar p_t/(1-\beta_2^t),\\
        p' = p_{t-1} - \eta\lambda\hat p_t,\quad
        p_t = p' - \eta\big(\gamma\operatorname{sign}(p' - \hat p_t) + \operatorname{sign}(m_t)\big)

    Paper: "FOCUS: First Order Concentrated Updating Scheme" (2025). Reference: ``pytorch_optimizer.FOCUS``,
    same keywords and defaults. As in the reference, weight decay subtracts :math:`\eta\lambda\hat p_t` (the
    running average, not :math:`p`).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-2``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the momentum and of the running
            parameter average. Default ``(0.9, 0.999)``.
        gamma: Strength :math:`\gamma` in [0, 1) of the attraction toward the average. Default ``0.1``.
        weight_decay: Coefficient :math:`\lambda` (>= 0) of the decay toward zero by the running average.
            Default ``0.0``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "focus"
    family = "sign"
    reference = "pytorch_optimizer.FOCUS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        betas: Sequence[float] = (0.9, 0.999),
        gamma: Tunable = 0.1,
        weight_decay: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("gamma", gamma, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "pbar")

    def step_scalars(self, hp) -> None:
        hp.bc2 = hp.bias_correction("beta2")
        hp.lr_wd = hp.lr * hp.weight_decay

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        pbar = F.lerp(state["pbar"], p, hp.one_minus_beta2)
        state["exp_avg"], state["pbar"] = m, pbar
        pbar_hat = pbar / hp.bc2
        if self.decays():
            p = p - hp.lr_wd * pbar_hat
        # sign_diff(p, pbar_hat) == sign(p - pbar_hat), one operation shallower: one kernel (mlx_optim.fusion)
        return p - hp.lr * (hp.gamma * F.sign_diff(p, pbar_hat) + F.sign(m))
