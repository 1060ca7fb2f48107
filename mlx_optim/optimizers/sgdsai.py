"""SGD-SaI: SGD with learning rates scaled at initialization."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def gsnr(g: mx.array, eps) -> mx.array:
    """SGD-SaI's gradient signal-to-noise ratio ``||g|| / (std(g) + eps)`` (``||g||`` when std is 0 or undefined).

    The unbiased std is used only for tensors with more than one dimension and a first dimension > 1.
    """
    g_norm = F.norm(g)
    if g.ndim <= 1 or g.shape[0] == 1:
        return g_norm
    g32 = g.astype(mx.float32)
    sigma = mx.nan_to_num(mx.sqrt(mx.sum(mx.square(g32 - mx.mean(g32))) / (g.size - 1)), nan=0.0)
    return mx.where(sigma != 0, g_norm / (sigma + eps), g_norm)


@register
class SGDSaI(Optimizer):
    r"""SGD-SaI: momentum SGD whose per-tensor learning rates are scaled once, at initialization.

    Each tensor's learning rate is scaled once, by the gradient signal-to-noise ratio of its *first*
    gradient (:func:`gsnr`), then plain momentum SGD:

    .. math::
        s = \lVert g_1\rVert / (\operatorname{std}(g_1) + \epsilon),\quad
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad p_t = p_{t-1}(1-\eta\lambda) - \eta\, s\, b_t

    Weight decay is decoupled by default.

    Paper: Xu et al., "No More Adam: Learning Rate Scaling at Initialization is All You Need",
    arXiv:2412.11768, 2024.

    Reference: ``pytorch_optimizer.SGDSaI`` (parity-checked). Reference quirk kept: with
    ``weight_decouple=False`` and momentum > 0 the L2 term is added to the gradient *after* the momentum update
    and so has no effect.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-2``.
        momentum: Momentum factor :math:`\mu`, in [0, 1]; 0 disables the momentum buffer. Default ``0.9``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``1e-2``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        eps: Term added to the standard deviation in the signal-to-noise ratio (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "sgdsai"
    family = "sgd"
    reference = "pytorch_optimizer.SGDSaI"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)
        state["gsnr"] = mx.zeros((), mx.float32)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        scale = mx.where(hp.step == 1, gsnr(g, hp.eps), state["gsnr"])
        state["gsnr"] = scale
        if self.use_momentum:
            buf = F.lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
            state["momentum_buffer"] = buf
            p, _ = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        else:
            p, buf = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        return p - (hp.lr * scale) * buf
