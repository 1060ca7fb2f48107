"""AdaLOMO (Lv et al., 2023): LOMO with Adafactor's factored second moment."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Tunable
from mlx_optim.functional.factored import clip_by_rms, factored_moments, factored_rsqrt
from mlx_optim.optimizers.lomo import _FusedBackwardClipping
from mlx_optim.registry import register


@register
class AdaLOMO(_FusedBackwardClipping):
    r"""AdaLOMO: LOMO (SGD with gradient clipping) with Adafactor's factored second moment and relative step size.

    .. math::
        \hat\beta_{2,t} = 1 - t^{c},\quad
        R_t = \operatorname{lerp}\big(R_{t-1}, \operatorname{mean}_{-1}(g^2+\epsilon_1), 1-\hat\beta_{2,t}\big),
        \ C_t \text{ alike} \\
        u_t = \frac{g_t \odot \hat V_t^{-1/2}}{\max(1, \mathrm{rms}(\cdot)/d)},\quad
        \eta_t = \eta \max(\epsilon_2, \mathrm{rms}(p_{t-1})),\quad
        p_t = p_{t-1}(1 - \eta_t\lambda) - \eta_t u_t

    with :math:`c` = ``decay_rate``, :math:`d` = ``clip_threshold``; the gradient is first clipped
    by value and by global norm as in :class:`LOMO`. Rank-1 tensors keep a full second moment.

    Paper: "AdaLomo: Low-memory Optimization with Adaptive Learning Rate" (Lv et al., 2023),
    arXiv:2310.10195. Reference: ``pytorch_optimizer.AdaLOMO``, same keywords and defaults. Differences (see
    :class:`LOMO` for the fused backward): the gradient tree is given, so ``loss_scale`` (the reference
    multiplies the loss by it before ``backward`` and divides the gradients by it again) has no effect here; it
    is accepted and validated for signature compatibility. The reference supports only 1-D and 2-D parameters;
    tensors of rank >= 3 are factored here over their last two axes (as in :class:`AdaFactor`) and scalars keep
    a full second moment. There is no ``maximize``.

    Args:
        learning_rate: Step size :math:`\eta`, scaled by the parameter RMS: a float or a schedule (a callable
            of the step). Default ``1e-3``.
        weight_decay: Decoupled weight decay :math:`\lambda` (>= 0), applied at :math:`\eta_t`. Default ``0.0``.
        loss_scale (float): Accepted and validated (>= 0) for compatibility; no effect here. Default ``1024.0``.
        clip_threshold: Maximum RMS :math:`d` (>= 0) of the preconditioned update. Default ``1.0``.
        decay_rate: Exponent :math:`c` of the second-moment decay schedule :math:`1 - t^{c}` (negative).
            Default ``-0.8``.
        clip_grad_norm (float | None): Clip the gradients to this global norm (over the whole tree); ``None``
            or 0: no norm clipping. Default ``None``.
        clip_grad_value (float | None): Clip each gradient entry to ``[-value, value]``; ``None`` or 0: no
            value clipping. Default ``None``.
        eps1: :math:`\epsilon_1` (>= 0) added to the squared gradient. Default ``1e-30``.
        eps2: Lower bound :math:`\epsilon_2` (>= 0) of the parameter RMS in the step size. Default ``1e-3``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adalomo"
    family = "memory-efficient"
    reference = "pytorch_optimizer.AdaLOMO"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        weight_decay: Tunable = 0.0,
        loss_scale: float = 2.0**10,
        clip_threshold: Tunable = 1.0,
        decay_rate: Tunable = -0.8,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        eps1: Tunable = 1e-30,
        eps2: Tunable = 1e-3,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("loss_scale", loss_scale, 0.0)
        self.loss_scale = loss_scale
        self._hyper("clip_threshold", clip_threshold, 0.0)
        self._hyper("decay_rate", decay_rate)
        self._clipping(clip_grad_norm, clip_grad_value)
        self._hyper("eps1", eps1, 0.0)
        self._hyper("eps2", eps2, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        shape = parameter.shape
        if len(shape) >= 2:
            state["exp_avg_sq_row"] = self.zeros(parameter, shape[:-1])
            state["exp_avg_sq_col"] = self.zeros(parameter, shape[:-2] + shape[-1:])
        else:
            state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.moment_weight = mx.power(hp.step, hp.decay_rate)  # 1 - beta2_t

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g = self.clip(g)
        sq = mx.square(g) + hp.eps1
        if g.ndim >= 2:
            row, col = factored_moments(sq, state["exp_avg_sq_row"], state["exp_avg_sq_col"], hp.moment_weight)
            state["exp_avg_sq_row"], state["exp_avg_sq_col"] = row, col
            update = factored_rsqrt(row, col) * g
        else:
            v = F.torch_lerp(state["exp_avg_sq"], sq, hp.moment_weight)
            state["exp_avg_sq"] = v
            update = mx.rsqrt(v) * g
        update = clip_by_rms(update, hp.clip_threshold)
        lr = mx.maximum(F.rms(p), hp.eps2) * hp.lr
        p, _ = self.apply_weight_decay(p, g, decouple=True, lr=lr)
        return p - update * lr
