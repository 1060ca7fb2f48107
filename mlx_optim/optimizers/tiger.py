"""Tiger: the sign of a single momentum."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Tiger(Optimizer):
    r"""Tiger: a "tight-fisted" sign optimizer, the sign of a single momentum.

    .. math:: m_t = \beta m_{t-1} + (1-\beta) g_t,\quad p_t = p_{t-1} - \eta \operatorname{sign}(m_t)

    Weight decay (decoupled by default) is applied before the momentum.

    Paper: Su, "Tiger: A Tight-fisted Optimizer" (2023, github.com/bojone/tiger).

    Reference: ``pytorch_optimizer.Tiger`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        beta: Decay rate :math:`\beta` of the momentum, in [0, 1). Default ``0.965``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.01``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "tiger"
    family = "sign"
    reference = "pytorch_optimizer.Tiger"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.965,
        weight_decay: Tunable = 0.01,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = hp.beta * state["exp_avg"] + hp.one_minus_beta * g
        state["exp_avg"] = m
        return p - hp.lr * F.sign(m)
