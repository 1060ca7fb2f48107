"""LARS: SGD with a layer-wise trust ratio."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.moments import momentum_buffer
from mlx_optim.registry import register


def lars_trust_ratio(p: mx.array, g: mx.array, trust_coefficient: Any, weight_decay: Any) -> mx.array:
    """LARS: ``tc * |p| / (|g| + wd |p|)``, 1 where ``|p|`` or the denominator is 0."""
    p_norm, g_norm = F.norm(p), F.norm(g)
    denom = g_norm + weight_decay * p_norm
    safe = mx.where(denom > 0, denom, 1.0)
    return mx.where((p_norm > 0) & (denom > 0), trust_coefficient * p_norm / safe, 1.0)


@register
class LARS(Optimizer):
    r"""LARS: SGD with momentum and a layer-wise trust ratio, for large-batch training.

    For tensors with more than one dimension:

    .. math::
        r = \frac{c\,\lVert p\rVert}{\lVert g\rVert + \lambda\lVert p\rVert},\quad
        g \leftarrow r\,(g + \lambda p),\qquad
        b_t = \mu b_{t-1} + (1-\tau) g,\quad p_t = p - \eta\,(g + \mu b_t \text{ if nesterov else } b_t)

    (:math:`r = 1` where a norm is zero). Scalars and vectors take plain (momentum) SGD steps without weight
    decay or trust ratio. The momentum buffer starts at zero, as in the reference.

    Paper: You et al., "Large Batch Training of Convolutional Networks", arXiv:1708.03888, 2017.

    Reference: ``pytorch_optimizer.LARS`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        weight_decay: L2 weight decay :math:`\lambda` (>= 0), added to the gradient of tensors with
            ``ndim > 1`` and counted in the trust ratio. Default ``0.0``.
        momentum: Momentum factor :math:`\mu`, in [0, 1); 0 disables the momentum buffer. Default ``0.9``.
        dampening: Dampening :math:`\tau` of the gradient added to the buffer, in [0, 1). Default ``0.0``.
        trust_coefficient: Trust coefficient :math:`c` (>= 0). Default ``1e-3``.
        nesterov: Use Nesterov momentum. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "lars"
    family = "sgd"
    # two norms (Square + Sum + Squeeze, Sqrt each), wd * |p|, the step. The norms stay scalar: with kept dims
    # (norm_kd) the trust-ratio math would run per element
    ops_per_leaf = 10
    reference = "pytorch_optimizer.LARS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        weight_decay: Tunable = 0.0,
        momentum: Tunable = 0.9,
        dampening: Tunable = 0.0,
        trust_coefficient: Tunable = 1e-3,
        nesterov: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("dampening", dampening, 0.0, 1.0, "[)")
        self._hyper("trust_coefficient", trust_coefficient, 0.0)
        self.nesterov = nesterov
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if p.ndim > 1:
            wd = hp.weight_decay if self.decays() else 0.0
            g = (g + wd * p) * lars_trust_ratio(p, g, hp.trust_coefficient, wd)
        if self.use_momentum:
            buf = momentum_buffer(state["momentum_buffer"], g, hp.momentum, hp.dampening)
            state["momentum_buffer"] = buf
            g = g + hp.momentum * buf if self.nesterov else buf
        return p - hp.lr * g
