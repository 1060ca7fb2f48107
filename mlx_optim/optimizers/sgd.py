"""SGD (torch.optim semantics) and SGDW."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import kernels  # fused GPU kernels (dispatch in SGD.update_single)
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.moments import momentum_buffer
from mlx_optim.registry import register


@register
class SGD(Optimizer):
    r"""SGD with momentum, dampening, Nesterov and L2 weight decay, as ``torch.optim.SGD``.

    .. math::
        d_t = g_t + \lambda p_{t-1},\quad b_t = \mu b_{t-1} + (1-\tau) d_t,\quad
        p_t = p_{t-1} - \eta\,(d_t + \mu b_t \text{ if nesterov else } b_t)

    As in PyTorch the first momentum step is undampened (:math:`b_1 = d_1`), which ``mlx.optimizers.SGD``
    does not do.

    Paper: Robbins & Monro, "A Stochastic Approximation Method", Annals of Mathematical Statistics, 1951;
    Nesterov momentum as in Sutskever et al., "On the importance of initialization and momentum in deep
    learning", ICML 2013.

    Reference: ``torch.optim.SGD`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Momentum factor :math:`\mu` (>= 0); 0 disables the momentum buffer. Default ``0.0``.
        dampening: Dampening :math:`\tau` of the gradient added to the buffer (not on the first step).
            Default ``0.0``.
        weight_decay: L2 penalty :math:`\lambda` added to the gradient (>= 0). Default ``0.0``.
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening = 0``. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated; keyword-only).
            Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "sgd"
    family = "sgd"
    reference = "torch.optim.SGD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.0,
        dampening: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0)
        self._hyper("dampening", dampening)
        self._hyper("weight_decay", weight_decay, 0.0)
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("SGD: nesterov=True requires momentum > 0 and dampening=0")
        self.nesterov = nesterov
        self.use_momentum = callable(momentum) or momentum != 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.damp = mx.where(hp.step > 1, hp.dampening, 0.0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        # -- fused kernel (mlx_optim.kernels.SGD_MOMENTUM): Metal/CUDA with momentum only; None on the CPU
        fused = kernels.sgd_momentum(self, g, p, state)
        if fused is not None:
            return fused
        # -- end fused kernel
        p, d_p = self.apply_weight_decay(p, g, decouple=False)
        if self.use_momentum:
            buf = momentum_buffer(state["momentum_buffer"], d_p, hp.momentum, hp.damp)
            state["momentum_buffer"] = buf
            d_p = d_p + hp.momentum * buf if self.nesterov else buf
        return p - hp.lr * d_p


@register
class SGDW(Optimizer):
    r"""SGDW: SGD with momentum and decoupled weight decay.

    .. math::
        p \leftarrow p(1-\eta\lambda),\quad b_t = \mu b_{t-1} + (1-\tau) g_t\ (b_1 = g_1),\quad
        p_t = p - \eta\,(g_t + \mu b_t \text{ if nesterov else } b_t)

    ``weight_decouple=False`` folds an L2 penalty into the gradient instead. As in the reference the first
    momentum step copies the gradient (no dampening).

    Paper: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101.

    Reference: ``pytorch_optimizer.SGDW`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-4``.
        momentum: Momentum factor :math:`\mu`, in [0, 1); 0 disables the momentum buffer. Default ``0.0``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        dampening: Dampening :math:`\tau` of the gradient added to the buffer (not on the first step).
            Default ``0.0``.
        nesterov: Nesterov momentum. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "sgdw"
    family = "sgd"
    reference = "pytorch_optimizer.SGDW"

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        momentum: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        dampening: Tunable = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("dampening", dampening)
        self.weight_decouple, self.nesterov = weight_decouple, nesterov
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.damp = mx.where(hp.step > 1, hp.dampening, 0.0)  # b_1 = g_1 from a zero buffer

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        if self.use_momentum:
            buf = momentum_buffer(state["momentum_buffer"], g, hp.momentum, hp.damp)
            state["momentum_buffer"] = buf
            g = g + hp.momentum * buf if self.nesterov else buf
        return p - hp.lr * g
