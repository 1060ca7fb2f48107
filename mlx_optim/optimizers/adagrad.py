"""Adagrad (Duchi et al., 2011)."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Adagrad(Optimizer):
    r"""Adagrad: per-coordinate step sizes divided by the root of the accumulated squared gradients.

    .. math::
        s_t = s_{t-1} + g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}} \frac{g_t}{\sqrt{s_t} + \epsilon}

    :math:`s_0` = ``initial_accumulator_value``; ``weight_decay`` is an L2 penalty added to the gradient.

    Paper: "Adaptive Subgradient Methods for Online Learning and Stochastic Optimization" (Duchi, Hazan,
    Singer), JMLR 2011. Reference: ``torch.optim.Adagrad``, same keywords and defaults (``eps=1e-10``; unlike
    ``mlx.optimizers.Adagrad``, which uses 1e-8 and has no ``lr_decay``); torch's ``foreach``,
    ``differentiable`` and ``fused`` execution options have no counterpart.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-2``.
        lr_decay: Learning-rate decay (>= 0): the step is divided by :math:`1 + (t-1)\,\text{lr\_decay}`.
            Default ``0.0``.
        weight_decay: L2 penalty coefficient (>= 0) added to the gradient. Default ``0.0``.
        initial_accumulator_value (float): Initial value (>= 0) of the sum of squared gradients. Default ``0.0``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-10``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adagrad"
    family = "adaptive"
    reference = "torch.optim.Adagrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        lr_decay: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: Tunable = 1e-10,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lr_decay", lr_decay, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("initial_accumulator_value", initial_accumulator_value, 0.0)
        self._hyper("eps", eps, 0.0)
        self.initial_accumulator_value = float(initial_accumulator_value)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["sum"] = self.full(parameter, self.initial_accumulator_value)

    def step_scalars(self, hp) -> None:
        hp.clr = hp.lr / (1 + (hp.step - 1) * hp.lr_decay)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        s = state["sum"] + mx.square(g)
        state["sum"] = s
        return p - hp.clr * g / (mx.sqrt(s) + hp.eps)
