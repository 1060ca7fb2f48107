"""AdaMod (Ding et al., 2019): Adam with per-coordinate step sizes bounded by their own running average."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable, betas3
from mlx_optim.registry import register


@register
class AdaMod(Optimizer):
    r"""AdaMod (Ding et al., 2019): Adam with per-coordinate step sizes bounded by their own running average.

    .. math::
        \eta_t = \frac{\eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{v_t}+\epsilon},\quad
        s_t = \beta_3 s_{t-1} + (1-\beta_3)\eta_t,\quad
        p_t = p_{t-1} - \min(\eta_t, s_t)\, m_t

    Paper: "An Adaptive and Momental Bound Method for Stochastic Learning", 2019.
    The Keras seed's defaults are ``betas=(0.9, 0.999, 0.999)``; we keep the
    reference's ``(0.9, 0.99, 0.9999)``.
    """

    name = "adamod"
    family = "adam"
    reference = "pytorch_optimizer.AdaMod"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.99, 0.9999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas3(self, betas)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay, self.adam_debias = weight_decouple, fixed_decay, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["exp_avg_lr"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2"))
        hp.step_size = step_size if self.adam_debias else step_size / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = hp.ema(state["exp_avg"], g, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        step = hp.step_size / (mx.sqrt(v) + hp.eps)
        avg_step = hp.ema(state["exp_avg_lr"], step, "beta3")
        state["exp_avg"], state["exp_avg_sq"], state["exp_avg_lr"] = m, v, avg_step
        return p - mx.minimum(step, avg_step) * m
