"""AdaMod (Ding et al., 2019): Adam with step sizes bounded by their own running average."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable, betas3
from mlx_optim.registry import register


@register
class AdaMod(Optimizer):
    r"""AdaMod: Adam with per-coordinate step sizes bounded by their own running average.

    .. math::
        \eta_t = \frac{\eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{v_t}+\epsilon},\quad
        s_t = \beta_3 s_{t-1} + (1-\beta_3)\eta_t,\quad
        p_t = p_{t-1} - \min(\eta_t, s_t)\, m_t

    with :math:`m_t`, :math:`v_t` Adam's moment EMAs.

    Paper: "An Adaptive and Momental Bound Method for Stochastic Learning" (Ding et al., 2019),
    arXiv:1910.12249. Reference: ``pytorch_optimizer.AdaMod``, same keywords and defaults; its
    ``adam_debias`` option (``**kwargs``) is a keyword-only argument here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`: decay rates of the gradient mean and the squared gradient
            (each in [0, 1)) and of the step-size average (in [0, 1]). Default ``(0.9, 0.99, 0.9999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
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
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", "exp_avg_lr")

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
