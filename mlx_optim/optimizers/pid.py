"""PID: SGD with integral and derivative terms."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class PID(Optimizer):
    r"""PID: a PID-controller optimizer, SGD plus integral and derivative terms.

    With momentum :math:`\mu > 0`:

    .. math::
        I_t = \mu I_{t-1} + (1-\tau) g_t,\quad D_t = \mu D_{t-1} + (1-\mu)(g_t - g_{t-1})\ (D_1 = 0),\\
        p_t = p_{t-1} - \eta\,(g_t + K_I I_t + K_D D_t)

    With ``momentum=0`` (the default) it is plain SGD, as in the reference.

    Paper: An et al., "A PID Controller Approach for Stochastic Optimization of Deep Networks", CVPR 2018.

    Reference: ``pytorch_optimizer.PID`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Momentum factor :math:`\mu` of the integral and derivative buffers, in [0, 1); 0 gives
            plain SGD. Default ``0.0``.
        dampening: Dampening :math:`\tau` of the gradient entering the integral buffer. Default ``0.0``.
        derivative: Derivative gain :math:`K_D` (>= 0). Default ``10.0``.
        integral: Integral gain :math:`K_I` (>= 0). Default ``5.0``.
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

    name = "pid"
    family = "sgd"
    reference = "pytorch_optimizer.PID"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.0,
        dampening: Tunable = 0.0,
        derivative: Tunable = 10.0,
        integral: Tunable = 5.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("dampening", dampening)
        self._hyper("derivative", derivative, 0.0)
        self._hyper("integral", integral, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            for key in ("grad_buffer", "i_buffer", "d_buffer"):
                state[key] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        if self.use_momentum:
            i_buf = hp.momentum * state["i_buffer"] + hp.one_minus_dampening * g
            diff = mx.where(hp.step > 1, g - state["grad_buffer"], 0.0)
            d_buf = hp.momentum * state["d_buffer"] + hp.one_minus_momentum * diff
            state["i_buffer"], state["d_buffer"], state["grad_buffer"] = i_buf, d_buf, g
            g = g + hp.integral * i_buf + hp.derivative * d_buf
        return p - hp.lr * g
