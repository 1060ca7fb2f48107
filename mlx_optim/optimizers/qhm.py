"""QHM: quasi-hyperbolic momentum."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class QHM(Optimizer):
    r"""QHM: quasi-hyperbolic momentum, a step along a blend of the gradient and its moving average.

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad p_t = p_{t-1} - \eta\,\big(\nu b_t + (1-\nu) g_t\big)

    Paper: Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019, arXiv:1810.06801.

    Reference: ``pytorch_optimizer.QHM`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Decay rate :math:`\mu` of the gradient average, in [0, 1). Default ``0.0``.
        nu: Weight :math:`\nu` of the average against the gradient, in [0, 1]; 1 is momentum SGD with
            dampening. Default ``1.0``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``False``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "qhm"
    family = "sgd"
    reference = "pytorch_optimizer.QHM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.0,
        nu: Tunable = 1.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("nu", nu, 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        buf = F.lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        return p - hp.lr * hp.nu * buf - hp.lr * hp.one_minus_nu * g
