"""SGDP: SGD without the radial update component for scale-invariant weights."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.moments import momentum_buffer
from mlx_optim.functional.projections import adamp_projection
from mlx_optim.registry import register


@register
class SGDP(Optimizer):
    r"""SGDP: SGD that removes the radial part of the update for scale-invariant weights.

    .. math::
        b_t = \mu b_{t-1} + (1-\tau) g_t,\quad d_t = g_t + \mu b_t \text{ if nesterov else } b_t,\\
        d_t \leftarrow d_t - \hat p\langle\hat p, d_t\rangle \text{ if } \max|\cos(g_t, p)| < \delta/\sqrt{d},\quad
        p_t = p\,\big(1 - \eta\lambda\,r/(1-\mu)\big) - \eta d_t

    The projection is tried per output channel, then per layer (tensors with more than one dimension only);
    a projected tensor uses the weight-decay ratio ``r = wd_ratio`` (else 1). The momentum buffer starts at
    zero (no first-step copy), as in the reference.

    Paper: Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant
    Weights", ICLR 2021, arXiv:2006.08217.

    Reference: ``pytorch_optimizer.SGDP`` (parity-checked). Reference quirk kept for parity: the L2 penalty
    (``weight_decouple=False``) is added to the gradient after the update was formed, so it has no effect.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Momentum factor :math:`\mu`. Default ``0.0``.
        dampening: Dampening :math:`\tau` of the gradient added to the buffer. Default ``0.0``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled weight decay (above); ``False`` applies none (reference quirk).
            Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        delta: Threshold :math:`\delta` of the cosine test that detects scale-invariant weights.
            Default ``0.1``.
        wd_ratio: Weight-decay ratio :math:`r` of projected tensors, in [0, 1). Default ``0.1``.
        nesterov: Nesterov momentum. Default ``False``.
        eps: Term added to the norms in the cosine test and the projection (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "sgdp"
    family = "sgd"
    reference = "pytorch_optimizer.SGDP"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.0,
        dampening: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        delta: Tunable = 0.1,
        wd_ratio: Tunable = 0.1,
        nesterov: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum)
        self._hyper("dampening", dampening)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("delta", delta)
        self._hyper("wd_ratio", wd_ratio, 0.0, 1.0, "[)")
        self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay, self.nesterov = weight_decouple, fixed_decay, nesterov

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        buf = momentum_buffer(state["momentum"], g, hp.momentum, hp.dampening)
        state["momentum"] = buf
        d_p = g + hp.momentum * buf if self.nesterov else buf
        ratio = 1.0
        if p.ndim > 1:
            d_p, ratio = adamp_projection(p, g, d_p, hp.delta, hp.wd_ratio, hp.eps)
        if self.weight_decouple:
            ratio = ratio / hp.one_minus_momentum
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, ratio=ratio)
        return p - hp.lr * d_p
