"""signSGD / Signum: steps along the sign of the (averaged) gradient."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class SignSGD(Optimizer):
    r"""signSGD / Signum: steps along the sign of the gradient or of its moving average.

    .. math:: m_t = \mu m_{t-1} + (1-\mu) g_t,\quad p_t = p_{t-1} - \eta \operatorname{sign}(m_t)

    ``momentum=0`` gives signSGD (the sign of the gradient itself). Decoupled weight decay by default.

    Paper: Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex Problems", ICML 2018,
    arXiv:1802.04434.

    Reference: ``pytorch_optimizer.SignSGD`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Decay rate :math:`\mu` of the gradient average, in [0, 1); 0 gives signSGD.
            Default ``0.9``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "signsgd"
    family = "sign"
    reference = "pytorch_optimizer.SignSGD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self.weight_decouple = weight_decouple
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        if self.use_momentum:
            g = F.lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
            state["momentum_buffer"] = g
        return p - hp.lr * F.sign(g)
