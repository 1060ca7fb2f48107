"""Adafactor (Shazeer & Stern, 2018): AdaFactor and AdafactorBigVision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.factored import clip_by_rms, factored_moments, factored_rsqrt
from mlx_optim.registry import register


def bigvision_factored_dims(shape: Sequence[int], min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """big_vision / optax ``_factored_dims``: ``(second largest axis, largest axis)`` or ``None``.

    ``None`` (no factoring) for tensors of rank < 2 or whose second-largest axis is shorter than
    ``min_dim_size_to_factor``. Ties are broken by axis index (stable sort, as timm does).
    """
    if len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return order[-2], order[-1]


def timm_caution(update: mx.array, g: mx.array) -> mx.array:
    """timm's cautious mask: keep entries agreeing in sign with ``g``, divided by ``max(mean(mask), 1e-3)``."""
    mask = (update * g > 0).astype(update.dtype)
    return update * (mask / mx.maximum(mx.mean(mask), 1e-3))


def _lerp_lowp(avg: mx.array, x: mx.array, weight: Any) -> tuple[mx.array, mx.array]:
    """``avg.lerp_(x.to(avg.dtype), weight)`` for a possibly low-precision ``avg``.

    Returns ``(new_avg in avg's dtype, new_avg in x's dtype)``; the arithmetic is float32
    (torch's opmath), with ``x`` first rounded to ``avg``'s dtype as the reference does.
    """
    if avg.dtype == x.dtype:
        new = F.torch_lerp(avg, x, weight)
        return new, new
    new = F.torch_lerp(avg.astype(mx.float32), x.astype(avg.dtype).astype(mx.float32), weight).astype(avg.dtype)
    return new, new.astype(x.dtype)


@register
class AdaFactor(Optimizer):
    r"""AdaFactor: Adam-like steps with a factored (row and column) second moment and a relative step size.

    Tensors of rank >= 2 keep row and column EMAs of :math:`g^2 + \epsilon_1` over their last two
    axes instead of a full second moment (rank < 2: a full one):

    .. math::
        \hat\beta_{2,t} = \min(\beta_{2}, 1 - t^{c}),\quad
        R_t = \operatorname{lerp}\big(R_{t-1}, \operatorname{mean}_{-1}(g^2+\epsilon_1), 1-\hat\beta_{2,t}\big),
        \ C_t \text{ alike} \\
        u_t = g_t \odot \hat V_t^{-1/2},\quad u_t \leftarrow u_t / \max(1, \mathrm{rms}(u_t)/d),\quad
        \eta_t = \rho_t \max(\epsilon_2, \mathrm{rms}(p_{t-1})) \\
        m_t = \operatorname{lerp}(m_{t-1}, \eta_t u_t, 1-\beta_1),\quad p_t = p_{t-1} - m_t

    with :math:`c` = ``decay_rate``, :math:`d` = ``clip_threshold`` and the relative step
    :math:`\rho_t = \min(10^{-2}, 1/\sqrt t)` (``warmup_init``: :math:`\min(10^{-6} t, 1/\sqrt t)`),
    or ``learning_rate`` when ``relative_step=False``; ``scale_parameter=False`` drops the
    :math:`\max(\epsilon_2, \mathrm{rms}(p))` factor. With the default ``relative_step=True`` the
    ``learning_rate`` is not used, as in the reference. Weight decay is scaled by :math:`\eta_t`.
    ``betas[0] = None`` disables the momentum buffer. The momentum is stored in
    ``momentum_dtype`` (bfloat16 by default, as in the reference, halving its memory). ``ams_bound`` keeps the
    running maximum of :math:`\hat V` and divides it by :math:`1-\hat\beta_{2,t}`; ``cautious`` masks the
    momentum update.

    Paper: "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost" (Shazeer & Stern), ICML 2018.
    Reference: ``pytorch_optimizer.AdaFactor``, same keywords and defaults; quirk kept: with
    ``momentum_dtype=mx.float16`` ``eps1`` is replaced by 1e-7. ``cautious`` is the reference's ``cautious``
    group option (``**kwargs``), a keyword-only argument here.

    Args:
        learning_rate: Step size used only when ``relative_step=False``: a float or a schedule (a callable of
            the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`: the momentum's decay rate in [0, 1) (``None``: no momentum buffer)
            and the cap in [0, 1) of the second-moment decay :math:`\hat\beta_{2,t}`. Default ``(0.9, 0.999)``.
        decay_rate: Exponent :math:`c` of the second-moment decay schedule :math:`1 - t^{c}` (negative).
            Default ``-0.8``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled decay ``p <- p (1 - eta_t wd)`` instead of an L2 penalty added to the
            gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the step size. Default ``False``.
        clip_threshold: Maximum RMS :math:`d` of the preconditioned update :math:`u_t`. Default ``1.0``.
        ams_bound: Use the running maximum of the second moment (AMSGrad). Default ``False``.
        scale_parameter: Scale the step by :math:`\max(\epsilon_2, \mathrm{rms}(p))`. Default ``True``.
        relative_step: Use the time-dependent step :math:`\rho_t` instead of ``learning_rate``. Default
            ``True``.
        warmup_init: With ``relative_step``, warm the relative step up linearly from :math:`10^{-6} t`.
            Default ``False``.
        eps1: :math:`\epsilon_1` (>= 0) added to the squared gradient. Default ``1e-30``.
        eps2: :math:`\epsilon_2` (>= 0), the lower bound of the parameter RMS in the step scale. Default
            ``1e-3``.
        momentum_dtype (mx.Dtype): dtype of the momentum buffer. Default ``mx.bfloat16``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        cautious: Zero the momentum update's entries whose sign disagrees with the gradient's. Default
            ``False``.
        state_dtype: dtype of the second-moment state (the momentum uses ``momentum_dtype``). Default ``None``:
            float32 for bfloat16/float16 parameters, the parameter's dtype otherwise; ``mx.bfloat16`` stores the
            state with stochastic rounding.
    """

    name = "adafactor"
    family = "memory-efficient"
    reference = "pytorch_optimizer.AdaFactor"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float | None] = (0.9, 0.999),
        decay_rate: Tunable = -0.8,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        clip_threshold: Tunable = 1.0,
        ams_bound: bool = False,
        scale_parameter: bool = True,
        relative_step: bool = True,
        warmup_init: bool = False,
        eps1: Tunable = 1e-30,
        eps2: Tunable = 1e-3,
        momentum_dtype: mx.Dtype = mx.bfloat16,
        maximize: bool = False,
        *,
        cautious: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 2:
            raise ValueError(f"AdaFactor: betas={betas!r} must have 2 values")
        self.use_momentum = betas[0] is not None
        if self.use_momentum:
            self._hyper("beta1", betas[0], 0.0, 1.0, "[)")
        self._hyper("beta2", betas[1], 0.0, 1.0, "[)")
        self._hyper("decay_rate", decay_rate)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("clip_threshold", clip_threshold)
        self._hyper("eps1", 1e-7 if momentum_dtype == mx.float16 else eps1, 0.0)
        self._hyper("eps2", eps2, 0.0)
        if not isinstance(momentum_dtype, mx.Dtype):
            raise ValueError(f"AdaFactor: momentum_dtype={momentum_dtype!r} must be an mx.Dtype")
        self.momentum_dtype = momentum_dtype
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound
        self.scale_parameter, self.relative_step, self.warmup_init = scale_parameter, relative_step, warmup_init
        self.cautious = cautious

    def init_single(self, parameter: mx.array, state: dict) -> None:
        shape = parameter.shape
        if self.use_momentum:
            state["exp_avg"] = mx.zeros(shape, self.momentum_dtype)
        if len(shape) >= 2:
            state["exp_avg_sq_row"] = self.zeros(parameter, shape[:-1])
            state["exp_avg_sq_col"] = self.zeros(parameter, shape[:-2] + shape[-1:])
        else:
            state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["exp_avg_sq_hat"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        beta2_t = mx.minimum(hp.beta2, 1.0 - mx.power(hp.step, hp.decay_rate))
        hp.moment_weight = 1.0 - beta2_t
        if self.relative_step:
            min_step = 1e-6 * hp.step if self.warmup_init else 1e-2
            hp.rel_step = mx.minimum(min_step, mx.rsqrt(hp.step))
        else:
            hp.rel_step = hp.lr

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        lr = mx.maximum(F.rms(p), hp.eps2) * hp.rel_step if self.scale_parameter else hp.rel_step
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple, fixed=self.fixed_decay, lr=lr)
        sq = mx.square(g) + hp.eps1
        if g.ndim >= 2:
            row, col = factored_moments(sq, state["exp_avg_sq_row"], state["exp_avg_sq_col"], hp.moment_weight)
            state["exp_avg_sq_row"], state["exp_avg_sq_col"] = row, col
            inv_sqrt_v = factored_rsqrt(row, col)
        else:
            v = F.torch_lerp(state["exp_avg_sq"], sq, hp.moment_weight)
            state["exp_avg_sq"] = v
            inv_sqrt_v = mx.rsqrt(v)
        if self.ams_bound:
            v_hat = self.apply_amsgrad(state, 1.0 / inv_sqrt_v, "exp_avg_sq_hat")
            inv_sqrt_v = mx.rsqrt(v_hat / hp.moment_weight)
        update = clip_by_rms(inv_sqrt_v * g, hp.clip_threshold) * lr
        if self.use_momentum:
            state["exp_avg"], update = _lerp_lowp(state["exp_avg"], update, hp.one_minus_beta1)
            if self.cautious:
                update = self.apply_cautious(update, g)
        return p - update


@register
class AdafactorBigVision(Optimizer):
    r"""AdafactorBigVision: big_vision's Adafactor, with a capped decay schedule and a low-precision momentum.

    big_vision's ``scale_by_adafactor``: optax's factored RMS scaling with a capped decay schedule,
    optional update clipping and a low-precision momentum, then the learning rate and decoupled
    weight decay (the arguments of timm's ``AdafactorBigVision``):

    .. math::
        \hat\beta_{2,t} = \min\big(\beta_{2,\mathrm{cap}},\ 1 - (t - t_0)^{-c}\big),\quad
        v_t = \hat\beta_{2,t} v_{t-1} + (1-\hat\beta_{2,t}) (g_t^2 + \epsilon) \text{ (factored: row/col means)} \\
        u_t = g_t / \sqrt{\hat v_t},\quad u_t \leftarrow u_t / \max(1, \mathrm{rms}(u_t)/\tau),\quad
        m_t = \mu m_{t-1} + (1-\mu) u_t,\quad p_t = p_{t-1}(1 - \eta\lambda) - \eta m_t

    with :math:`c` = ``decay_rate`` (a positive exponent here, unlike pytorch_optimizer's
    ``-0.8``), :math:`t_0` = ``decay_offset``, :math:`\tau` = ``clipping_threshold`` (``None``: no
    clipping) and :math:`\mu` = ``momentum`` (``None`` or 0: no momentum buffer). A tensor is
    factored over its two largest axes when the second largest has at least
    ``min_dim_size_to_factor`` entries: the row statistic averages over the largest axis, the
    column statistic over the second largest, and
    :math:`\hat v = (R / \operatorname{mean}(R))\, C`. ``unscaled_wd`` decays by
    :math:`1-\lambda` (big_vision's ``wd``) instead of :math:`1-\eta\lambda`; ``caution`` applies
    timm's cautious mask (divided by ``max(mean(mask), 1e-3)``) to the momentum.

    The momentum is kept in ``momentum_dtype`` (bfloat16 by default) exactly as ``optax.ema``
    does it: :math:`\mu m_{t-1}` is evaluated in that dtype (JAX keeps the weakly typed
    :math:`\mu` in bfloat16), the new average is formed in float32 and is the update, and only
    the stored copy is rounded.

    Paper: "Scaling Vision Transformers" (Zhai et al.), CVPR 2022, arXiv:2106.04560. Reference: big_vision's
    ``scale_by_adafactor``, checked against a NumPy transcription (``tests/parity/rows/adafactor.py``). Differences
    from timm's port: timm ignores ``decay_offset``, clips with ``clamp(max=1)`` (which scales small updates
    *up*) and returns the rounded bfloat16 momentum; this class follows big_vision in all three. There is no
    ``maximize``.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1.0``.
        epsilon: :math:`\epsilon` (>= 0) added to the squared gradient; ``None`` means 1e-30. Default ``None``.
        weight_decay: Decoupled weight decay :math:`\lambda` (>= 0). Default ``0.0``.
        min_dim_size_to_factor: A tensor is factored only when its second-largest axis has at least this many
            entries (>= 0). Default ``16``.
        decay_rate: Exponent :math:`c` (>= 0) of the second-moment decay schedule. Default ``0.8``.
        decay_offset (int): Step offset :math:`t_0` of the decay schedule. Default ``0``.
        beta2_cap: Cap in [0, 1] of the second-moment decay :math:`\hat\beta_{2,t}`. Default ``0.999``.
        momentum: Momentum decay :math:`\mu` in [0, 1); ``None`` or 0 keeps no momentum buffer. Default ``0.9``.
        momentum_dtype (mx.Dtype): dtype of the momentum buffer. Default ``mx.bfloat16``.
        clipping_threshold: Maximum RMS :math:`\tau` (> 0) of the scaled update; ``None``: no clipping. Default
            ``None``.
        unscaled_wd: Decay by :math:`1-\lambda` instead of :math:`1-\eta\lambda`. Default ``False``.
        caution: Apply timm's cautious mask to the momentum update. Default ``False``.
        state_dtype: dtype of the second-moment state (the momentum uses ``momentum_dtype``). Default ``None``:
            float32 for bfloat16/float16 parameters, the parameter's dtype otherwise; ``mx.bfloat16`` stores the
            state with stochastic rounding.
    """

    name = "adafactorbigvision"
    family = "memory-efficient"
    reference = "big_vision scale_by_adafactor (NumPy transcription in tests/parity/rows/adafactor.py)"

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        epsilon: Tunable | None = None,
        weight_decay: Tunable = 0.0,
        min_dim_size_to_factor: int = 16,
        decay_rate: Tunable = 0.8,
        decay_offset: int = 0,
        beta2_cap: Tunable = 0.999,
        momentum: Tunable | None = 0.9,
        momentum_dtype: mx.Dtype = mx.bfloat16,
        clipping_threshold: Tunable | None = None,
        unscaled_wd: bool = False,
        caution: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._hyper("epsilon", 1e-30 if epsilon is None else epsilon, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("min_dim_size_to_factor", min_dim_size_to_factor, 0)
        self._hyper("decay_rate", decay_rate, 0.0)
        if not isinstance(decay_offset, int):
            raise ValueError(f"AdafactorBigVision: decay_offset={decay_offset!r} must be an int")
        self._hyper("beta2_cap", beta2_cap, 0.0, 1.0)
        self.use_momentum = momentum is not None and (callable(momentum) or float(momentum) != 0.0)
        if self.use_momentum:
            self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self.use_clipping = clipping_threshold is not None
        if self.use_clipping:
            self._hyper("clipping_threshold", clipping_threshold, 0.0, None, "(]")
        if not isinstance(momentum_dtype, mx.Dtype):
            raise ValueError(f"AdafactorBigVision: momentum_dtype={momentum_dtype!r} must be an mx.Dtype")
        self.min_dim_size_to_factor, self.decay_offset = int(min_dim_size_to_factor), decay_offset
        self.momentum_dtype, self.unscaled_wd, self.caution = momentum_dtype, unscaled_wd, caution

    def init_single(self, parameter: mx.array, state: dict) -> None:
        shape = list(parameter.shape)
        dims = bigvision_factored_dims(shape, self.min_dim_size_to_factor)
        if dims is None:
            state["exp_avg_sq"] = self.zeros(parameter)
        else:
            d1, d0 = dims  # second largest, largest
            state["exp_avg_sq_r"] = self.zeros(parameter, [1 if i == d0 else s for i, s in enumerate(shape)])
            state["exp_avg_sq_c"] = self.zeros(parameter, [1 if i == d1 else s for i, s in enumerate(shape)])
        if self.use_momentum:
            state["exp_avg"] = mx.zeros(parameter.shape, self.momentum_dtype)

    def step_scalars(self, hp) -> None:
        t = hp.step - self.decay_offset
        hp.beta2_t = mx.minimum(hp.beta2_cap, 1.0 - mx.power(t, -hp.decay_rate))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        sq = mx.square(g) + hp.epsilon
        dims = bigvision_factored_dims(g.shape, self.min_dim_size_to_factor)
        if dims is None:
            v = F.ema(state["exp_avg_sq"], sq, hp.beta2_t)
            state["exp_avg_sq"] = v
            update = g * mx.rsqrt(v)
        else:
            d1, d0 = dims
            r = F.ema(state["exp_avg_sq_r"], mx.mean(sq, axis=d0, keepdims=True), hp.beta2_t)
            c = F.ema(state["exp_avg_sq_c"], mx.mean(sq, axis=d1, keepdims=True), hp.beta2_t)
            state["exp_avg_sq_r"], state["exp_avg_sq_c"] = r, c
            update = g * mx.rsqrt(r / mx.mean(r, axis=d1, keepdims=True)) * mx.rsqrt(c)
        if self.use_clipping:
            update = clip_by_rms(update, hp.clipping_threshold)
        if self.use_momentum:
            ema = state["exp_avg"]
            decayed = ema * hp.momentum.astype(ema.dtype)  # optax.ema: decay * ema in the accumulator dtype
            update = hp.one_minus_momentum * update + decayed.astype(update.dtype)
            state["exp_avg"] = update.astype(ema.dtype)
            if self.caution:
                update = timm_caution(update, g)
        p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.unscaled_wd)
        return p - hp.lr * update
