"""Memory-efficient optimizers: factored or block-shared second moments, and LOMO-style SGD.

AdaFactor (pytorch_optimizer), AdafactorBigVision (big_vision), CAME, SM3, AdamMini, LOMO and AdaLOMO.

The torch versions of AdamMini, LOMO and AdaLOMO take the model: AdamMini to partition the
parameters by name, LOMO/AdaLOMO to fuse the update into ``loss.backward()`` through
per-parameter hooks. Here they are ordinary optimizers on the gradient tree: AdamMini reads the
partition from each parameter's path in the tree (``"layers.0.attention.q_proj.weight"``), and
LOMO/AdaLOMO receive the whole gradient tree that ``mx.value_and_grad`` computes anyway (their
global gradient-norm clipping is a :meth:`prepare` pass over the tree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register

__all__ = [
    "AdaFactor",
    "AdafactorBigVision",
    "CAME",
    "SM3",
    "AdamMini",
    "LOMO",
    "AdaLOMO",
    "factored_rsqrt",
    "clip_by_rms",
    "bigvision_factored_dims",
]


# ----------------------------------------------------------------------------- shared pure math
def factored_rsqrt(row: mx.array, col: mx.array) -> mx.array:
    r"""Adafactor's factored inverse square root of the second moment (pytorch_optimizer's ``approximate_sq_grad``).

    ``row`` has the gradient's shape without its last axis, ``col`` without its second-to-last one:

    .. math:: \hat V^{-1/2}_{ij} = \big(R_i / \operatorname{mean}(R)\big)^{-1/2}\, C_j^{-1/2}
    """
    r = mx.rsqrt(row / mx.mean(row, axis=-1, keepdims=True))
    return mx.expand_dims(r, -1) * mx.expand_dims(mx.rsqrt(col), -2)


def clip_by_rms(update: mx.array, threshold: Any) -> mx.array:
    """Adafactor's update clipping: ``u / max(1, rms(u) / threshold)``."""
    return update / mx.maximum(F.rms(update) / threshold, 1.0)


def factored_moments(update: mx.array, row: mx.array, col: mx.array, weight: Any) -> tuple[mx.array, mx.array]:
    """Row/column EMAs ``lerp(row, mean_{-1}(update), w)``, ``lerp(col, mean_{-2}(update), w)``."""
    return F.torch_lerp(row, mx.mean(update, axis=-1), weight), F.torch_lerp(col, mx.mean(update, axis=-2), weight)


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


# ----------------------------------------------------------------------------- AdaFactor
@register
class AdaFactor(Optimizer):
    r"""AdaFactor (Shazeer & Stern, 2018) with pytorch_optimizer semantics.

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
    :math:`\max(\epsilon_2, \mathrm{rms}(p))` factor. Note that with the default
    ``relative_step=True`` the ``learning_rate`` is not used, as in the reference.
    ``betas[0] = None`` disables the momentum buffer. The momentum is stored in
    ``momentum_dtype`` (bfloat16 by default, as in the reference, halving its memory); with
    ``momentum_dtype=mx.float16`` ``eps1`` is 1e-7 (reference quirk). ``ams_bound`` keeps the running
    maximum of :math:`\hat V` and divides it by :math:`1-\hat\beta_{2,t}`; ``cautious`` masks the
    momentum update (pytorch_optimizer's ``cautious`` group option).
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


# ----------------------------------------------------------------------------- AdafactorBigVision
@register
class AdafactorBigVision(Optimizer):
    r"""Adafactor, BigVision variant (Zhai et al., "Scaling Vision Transformers", 2021).

    big_vision's ``scale_by_adafactor``: optax's factored RMS scaling with a capped decay schedule,
    optional update clipping and a low-precision momentum, then the learning rate and decoupled
    weight decay (the Keras seed's / timm's ``AdafactorBigVision`` arguments):

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
    the stored copy is rounded. ``epsilon=None`` means 1e-30. Differences from the seed's default
    list: none; differences from timm's port: timm ignores ``decay_offset``, clips with
    ``clamp(max=1)`` (which scales small updates *up*) and returns the rounded bfloat16 momentum;
    we follow big_vision in all three.
    """

    name = "adafactorbigvision"
    family = "memory-efficient"
    reference = "big_vision scale_by_adafactor (NumPy transcription in tests/parity/rows/factored.py)"

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


# ----------------------------------------------------------------------------- CAME
@register
class CAME(Optimizer):
    r"""CAME (Luo et al., 2023): confidence-guided adaptive memory-efficient optimization.

    pytorch_optimizer semantics. Adafactor's factored second moment (rank >= 2; full for rank < 2)
    with a first moment, and a second factored EMA of the squared *instability*
    :math:`(u_t - m_t)^2` that rescales the momentum:

    .. math::
        u_t = g_t \odot \hat V_t^{-1/2} / \max(1, \mathrm{rms}(\cdot)/d),\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) u_t \\
        S_t = \beta_3 S_{t-1} + (1-\beta_3)\big((u_t - m_t)^2 + \epsilon_2\big) \text{ (factored)},\quad
        p_t = p_{t-1} - \eta\, m_t \odot \hat S_t^{-1/2}

    where :math:`\hat V_t` uses EMAs (rate :math:`\beta_2`) of :math:`g^2 + \epsilon_1`. Rank < 2
    tensors skip the confidence factor (:math:`p_t = p_{t-1} - \eta m_t`). ``ams_bound`` keeps the
    running maximum of :math:`\hat V_t` and uses :math:`\hat V_{\max}/\beta_2` (reference quirk: a
    division by :math:`\beta_2`, not a bias correction). Weight decay is decoupled by default.
    """

    name = "came"
    family = "memory-efficient"
    reference = "pytorch_optimizer.CAME"

    def __init__(
        self,
        learning_rate: Tunable = 2e-4,
        betas: Sequence[float] = (0.9, 0.999, 0.9999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        clip_threshold: Tunable = 1.0,
        ams_bound: bool = False,
        eps1: Tunable = 1e-30,
        eps2: Tunable = 1e-16,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 3:
            raise ValueError(f"CAME: betas={betas!r} must have 3 values")
        self._betas(betas[:2], 2)
        self._hyper("beta3", betas[2], 0.0, 1.0, "[]")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("clip_threshold", clip_threshold)
        self._hyper("eps1", eps1, 0.0)
        self._hyper("eps2", eps2, 0.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        shape = parameter.shape
        state["exp_avg"] = self.zeros(parameter)
        if len(shape) >= 2:
            for key in ("exp_avg_sq", "exp_avg_res"):
                state[f"{key}_row"] = self.zeros(parameter, shape[:-1])
                state[f"{key}_col"] = self.zeros(parameter, shape[:-2] + shape[-1:])
        else:
            state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["exp_avg_sq_hat"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple, fixed=self.fixed_decay)
        sq = mx.square(g) + hp.eps1
        factored = g.ndim >= 2
        if factored:
            row = hp.ema(state["exp_avg_sq_row"], mx.mean(sq, axis=-1), "beta2")
            col = hp.ema(state["exp_avg_sq_col"], mx.mean(sq, axis=-2), "beta2")
            state["exp_avg_sq_row"], state["exp_avg_sq_col"] = row, col
            inv_sqrt_v = factored_rsqrt(row, col)
        else:
            v = hp.ema(state["exp_avg_sq"], sq, "beta2")
            state["exp_avg_sq"] = v
            inv_sqrt_v = mx.rsqrt(v)
        if self.ams_bound:
            v_hat = self.apply_amsgrad(state, 1.0 / inv_sqrt_v, "exp_avg_sq_hat")
            inv_sqrt_v = mx.rsqrt(v_hat / hp.beta2)
        update = clip_by_rms(inv_sqrt_v * g, hp.clip_threshold)
        m = F.torch_lerp(state["exp_avg"], update, hp.one_minus_beta1)
        state["exp_avg"] = m
        if not factored:
            return p - hp.lr * m
        res = mx.square(update - m) + hp.eps2
        row = hp.ema(state["exp_avg_res_row"], mx.mean(res, axis=-1), "beta3")
        col = hp.ema(state["exp_avg_res_col"], mx.mean(res, axis=-2), "beta3")
        state["exp_avg_res_row"], state["exp_avg_res_col"] = row, col
        return p - hp.lr * factored_rsqrt(row, col) * m


# ----------------------------------------------------------------------------- SM3
def sm3_second_moment(g: mx.array, accumulators: list[mx.array], beta: Any) -> tuple[mx.array, list[mx.array]]:
    """SM3-II: the per-entry second moment from per-axis accumulators, and the new accumulators.

    ``nu = beta' * min_i acc_i + (1 - beta) g^2`` (``beta' = beta`` if ``beta > 0`` else 1, i.e. a
    running sum); each accumulator becomes the max of ``nu`` over the other axes (with
    ``beta > 0`` also at least its old value).
    """
    nu = accumulators[0]
    for acc in accumulators[1:]:
        nu = mx.minimum(nu, acc)
    has_beta = beta > 0
    nu = mx.where(has_beta, beta * nu, nu) + (1 - beta) * mx.square(g)
    if g.ndim == 0:
        return nu, [nu]
    new = []
    for i, acc in enumerate(accumulators):
        other = tuple(d for d in range(g.ndim) if d != i)
        nu_max = mx.max(nu, axis=other, keepdims=True) if other else nu
        new.append(mx.where(has_beta, mx.maximum(acc, nu_max), nu_max))
    return nu, new


@register
class SM3(Optimizer):
    r"""SM3 (Anil et al., 2019): memory-efficient adaptive optimization, pytorch_optimizer semantics.

    A rank-:math:`k` tensor keeps :math:`k` accumulators, one per axis (a vector per axis, so
    :math:`\sum_i n_i` numbers instead of :math:`\prod_i n_i`):

    .. math::
        \nu_t = \beta\,\min_i a^{(i)}_{t-1} + (1-\beta) g_t^2,\quad
        a^{(i)}_t = \max\big(a^{(i)}_{t-1}, \max_{\neg i} \nu_t\big),\quad
        u_t = g_t / \sqrt{\nu_t + \epsilon} \\
        m_t = \operatorname{lerp}(m_{t-1}, u_t, 1-\mu),\quad p_t = p_{t-1} - \eta\, m_t

    With :math:`\beta = 0` (the default) :math:`\nu_t = \min_i a^{(i)}_{t-1} + g_t^2` and the
    accumulators are overwritten by the maxima (SM3-II). Deviation from the reference: the
    momentum buffer (always allocated by the reference) exists only when ``momentum > 0`` at
    construction; the momentum-free default keeps only the per-axis accumulators. Sparse
    gradients are not supported (MLX has none).
    """

    name = "sm3"
    family = "memory-efficient"
    reference = "pytorch_optimizer.SM3"

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        momentum: Tunable = 0.0,
        beta: Tunable = 0.0,
        eps: Tunable = 1e-30,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("beta", beta, 0.0, 1.0, "[]")
        self._hyper("eps", eps, 0.0)
        self.use_momentum = "momentum" not in self._zero

    def init_single(self, parameter: mx.array, state: dict) -> None:
        shape, rank = parameter.shape, parameter.ndim
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)
        if rank == 0:
            state["accumulator_0"] = self.zeros(parameter)
        for i in range(rank):
            state[f"accumulator_{i}"] = self.zeros(parameter, [1] * i + [shape[i]] + [1] * (rank - 1 - i))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        keys = [f"accumulator_{i}" for i in range(max(g.ndim, 1))]
        nu, accs = sm3_second_moment(g, [state[k] for k in keys], hp.beta)
        for k, a in zip(keys, accs):
            state[k] = a
        update = mx.rsqrt(nu + hp.eps) * g
        if self.use_momentum:
            update = F.torch_lerp(state["momentum_buffer"], update, hp.one_minus_momentum)
            state["momentum_buffer"] = update
        return p - hp.lr * update


# ----------------------------------------------------------------------------- AdamMini
@register
class AdamMini(Optimizer):
    r"""Adam-mini (Zhang et al., 2024): Adam with one second moment per parameter block.

    pytorch_optimizer semantics, with the partition read from each parameter's path in the tree
    (the torch version reads ``model.named_parameters()``; the paths here are the same dotted
    names, e.g. ``"model.layers.0.self_attn.q_proj.weight"``). With decoupled weight decay
    :math:`p \leftarrow p(1-\eta\lambda)` first (skipped for paths containing ``norm`` or
    ``ln_f``), each parameter is updated as

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        v^{(b)}_t = \operatorname{lerp}\big(v^{(b)}_{t-1}, \operatorname{mean}_{i\in b} g_{t,i}^2, 1-\beta_2\big) \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\, \frac{m_t}{\sqrt{v^{(b)}_t}/\sqrt{1-\beta_2^t} + \epsilon}

    where the blocks :math:`b` are, by the first rule whose substring occurs in the path:

    * ``embed_blocks`` (``embed``, ``embd``, ``wte``, ``lm_head.weight``, ``output.weight``): one
      block per entry, i.e. plain Adam;
    * ``qk_blocks`` (``q_proj.weight``, ``k_proj.weight``, ``wq.weight``, ``wk.weight`` and the
      MLX ``nn.MultiHeadAttention`` spellings ``query_proj.weight``, ``key_proj.weight``, an
      addition): one block per head, the flattened tensor cut into chunks of
      ``num_embeds**2 // num_heads`` entries;
    * ``attn.attn.weight`` / ``attn.qkv.weight`` (fused QKV): viewed as
      ``(num_query_groups, num_heads // num_query_groups + 2, -1)``, one block per row of that view;
    * anything else: the whole tensor is one block (a single scalar second moment).

    The rules are class attributes (``embed_blocks``, ``qk_blocks``, ``qkv_blocks``,
    ``no_decay_blocks``) that can be replaced on an instance before its first update. State:
    the first moment is full size; the second moment is full only for embeddings.
    ``model_sharding`` (torch.distributed all-reduce of the block sums) has no effect: MLX runs
    this optimizer in one process.
    """

    name = "adammini"
    family = "memory-efficient"
    reference = "pytorch_optimizer.AdamMini"

    embed_blocks: tuple[str, ...] = ("embed", "embd", "wte", "lm_head.weight", "output.weight")
    qk_blocks: tuple[str, ...] = (
        "k_proj.weight",
        "q_proj.weight",
        "wq.weight",
        "wk.weight",
        "query_proj.weight",
        "key_proj.weight",
    )
    qkv_blocks: tuple[str, ...] = ("attn.attn.weight", "attn.qkv.weight")
    no_decay_blocks: tuple[str, ...] = ("norm", "ln_f")

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.1,
        model_sharding: bool = False,
        num_embeds: int = 2048,
        num_heads: int = 32,
        num_query_groups: int | None = None,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        num_query_groups = num_heads if num_query_groups is None else num_query_groups
        self._check("num_embeds", num_embeds, 0, None, "(]")
        self._check("num_heads", num_heads, 0, None, "(]")
        self._check("num_query_groups", num_query_groups, 0, None, "(]")
        if num_embeds % num_heads:
            raise ValueError(f"AdamMini: num_embeds={num_embeds} must be divisible by num_heads={num_heads}")
        if num_heads % num_query_groups:
            raise ValueError(
                f"AdamMini: num_heads={num_heads} must be divisible by num_query_groups={num_query_groups}"
            )
        self.model_sharding = model_sharding
        self.num_embeds, self.num_heads, self.num_query_groups = num_embeds, num_heads, num_query_groups
        self._initializing = False
        self._paths: dict[int, str] = {}

    # --- the partition, from the parameter path
    def block_kind(self, path: str) -> str:
        """``"embed"``, ``"head"``, ``"qkv"`` or ``"tensor"``: how ``path`` is cut into second-moment blocks."""
        if any(b in path for b in self.embed_blocks):
            return "embed"
        if any(b in path for b in self.qk_blocks):
            return "head"
        if any(b in path for b in self.qkv_blocks):
            return "qkv"
        return "tensor"

    def init(self, parameters: Any) -> None:
        # The base class creates the state tree and calls init_single without paths; defer to a pass with paths.
        self._initializing = True
        try:
            super().init(parameters)
        finally:
            self._initializing = False
        for path, _, p, s in leaves(parameters, parameters, self.state):
            if not s:
                self._leaf_path = path
                self.init_single(p, s)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self._initializing:
            return
        path, kind = self._leaf_path, self.block_kind(self._leaf_path)
        state["m"] = self.zeros(parameter)
        if kind == "embed":
            state["v"] = self.zeros(parameter)
        elif kind == "head":
            per_head = self.num_embeds * self.num_embeds // self.num_heads
            if parameter.size % per_head:
                raise ValueError(
                    f"AdamMini: '{path}' has {parameter.size} entries, not a multiple of "
                    f"num_embeds**2 // num_heads = {per_head}"
                )
            state["v_head"] = self.zeros(parameter, (parameter.size // per_head,))
        elif kind == "qkv":
            rows = self.num_heads // self.num_query_groups + 2
            if parameter.size % (self.num_query_groups * rows):
                raise ValueError(
                    f"AdamMini: '{path}' has {parameter.size} entries, not divisible into "
                    f"({self.num_query_groups}, {rows}, -1) blocks"
                )
            state["v_qkv"] = self.zeros(parameter, (self.num_query_groups, rows))
        else:
            state["v_mean"] = self.zeros(parameter, ())

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        self._paths = {id(s): path for path, _, _, s in leaves(gradients, parameters, self.state)}

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        self._leaf_path = path = self._paths[id(state)]
        if not any(b in path for b in self.no_decay_blocks):
            p, _ = self.apply_weight_decay(p, g, decouple=True)
        m = F.torch_lerp(state["m"], g, hp.one_minus_beta1)
        state["m"] = m
        if "v" in state:  # embeddings: Adam
            v = hp.beta2 * state["v"] + hp.one_minus_beta2 * mx.square(g)
            state["v"] = v
            return p - (hp.lr / hp.bc1) * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)
        key = next(k for k in ("v_head", "v_qkv", "v_mean") if k in state)
        blocks = state[key].shape
        g_blocks = g.reshape(*blocks, -1)
        v = F.torch_lerp(state[key], mx.mean(mx.square(g_blocks), axis=-1), hp.one_minus_beta2)
        state[key] = v
        h = mx.sqrt(v) / hp.bc2_sqrt + hp.eps
        update = m.reshape(*blocks, -1) / mx.expand_dims(h * hp.bc1, -1)
        return p - hp.lr * update.reshape(p.shape)


# ----------------------------------------------------------------------------- LOMO / AdaLOMO
def _finite_grad_norm(gradients: Any) -> mx.array:
    """Global L2 norm over the leaves whose entries are all finite (LOMO's ``grad_norm`` drops the others)."""
    total = mx.array(0.0, mx.float32)
    for _, g, _, _ in leaves(gradients, gradients, gradients):
        g = g.astype(mx.float32)
        total = total + mx.where(mx.all(mx.isfinite(g)), mx.sum(mx.square(g)), 0.0)
    return mx.sqrt(total)


class _FusedBackwardClipping(Optimizer):
    """Gradient clipping shared by LOMO and AdaLOMO: by value, then by the global norm (``prepare``)."""

    def _clipping(self, clip_grad_norm: float | None, clip_grad_value: float | None) -> None:
        self._check("clip_grad_norm", 0.0 if clip_grad_norm is None else clip_grad_norm, 0.0)
        self._check("clip_grad_value", 0.0 if clip_grad_value is None else clip_grad_value, 0.0)
        self.clip_by_norm = clip_grad_norm is not None and clip_grad_norm > 0.0
        self.clip_by_value = clip_grad_value is not None and clip_grad_value > 0.0
        if self.clip_by_norm:
            self._hyper("clip_grad_norm", clip_grad_norm, 0.0)
        if self.clip_by_value:
            self._hyper("clip_grad_value", clip_grad_value, 0.0)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        if self.clip_by_norm:
            total = _finite_grad_norm(gradients)
            self.hp.clip_coef = mx.minimum(self.hp.clip_grad_norm / (total + 1e-6), 1.0)

    def clip(self, g: mx.array) -> mx.array:
        if self.clip_by_value:
            g = mx.clip(g, -self.hp.clip_grad_value, self.hp.clip_grad_value)
        if self.clip_by_norm:
            g = g * self.hp.clip_coef
        return g


@register
class LOMO(_FusedBackwardClipping):
    r"""LOMO (Lv et al., 2023): LOw-Memory Optimization, i.e. plain SGD with gradient clipping.

    .. math:: p_t = p_{t-1} - \eta\, c_t\, \operatorname{clip}(g_t, \pm v_{\max}),\quad
        c_t = \min\big(1, n_{\max} / (\lVert g_t \rVert_2 + 10^{-6})\big)

    with ``clip_grad_value`` :math:`v_{\max}` and ``clip_grad_norm`` :math:`n_{\max}` (global norm
    over the whole tree, of the unclipped gradients; ``None`` disables either). A tensor whose
    gradient has a NaN/inf entry is not updated (and not counted in the norm), as in the reference.

    Difference from the torch version: pytorch_optimizer's ``LOMO(model)`` hooks into
    ``loss.backward()`` and updates each parameter as soon as its gradient exists, so that the
    full gradient is never stored (``optimizer.grad_norm(loss)`` + ``optimizer.fused_backward(loss, lr)``,
    two backward passes when clipping by norm). MLX computes the whole gradient tree in one
    ``mx.value_and_grad`` call, so here LOMO is an ordinary optimizer on that tree
    (``opt.update(model, grads)``): the math is the same, the memory saving of the fused backward
    does not apply, and the gradient norm costs no second backward pass. The fp16 dynamic loss
    scaler of the reference (and its requirement of ``clip_grad_norm`` for fp16 models) is not
    ported: the update runs in float32 for low-precision parameters.
    """

    name = "lomo"
    family = "memory-efficient"
    reference = "pytorch_optimizer.LOMO"
    # the per-tensor all-finite test is a reduction (isfinite(g), All, Squeeze to 0-d) before the update's kernel;
    # keepdims=True saves the Squeeze but makes the flag a non-scalar input: the update's loop ran slower
    ops_per_leaf = 4

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._clipping(clip_grad_norm, clip_grad_value)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        pass

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        finite = mx.all(mx.isfinite(g))
        return mx.where(finite, p - self.hp.lr * self.clip(g), p)


@register
class AdaLOMO(_FusedBackwardClipping):
    r"""AdaLOMO (Lv et al., 2023): LOMO with Adafactor's factored second moment.

    .. math::
        \hat\beta_{2,t} = 1 - t^{c},\quad
        R_t = \operatorname{lerp}\big(R_{t-1}, \operatorname{mean}_{-1}(g^2+\epsilon_1), 1-\hat\beta_{2,t}\big),
        \ C_t \text{ alike} \\
        u_t = \frac{g_t \odot \hat V_t^{-1/2}}{\max(1, \mathrm{rms}(\cdot)/d)},\quad
        \eta_t = \eta \max(\epsilon_2, \mathrm{rms}(p_{t-1})),\quad
        p_t = p_{t-1}(1 - \eta_t\lambda) - \eta_t u_t

    with :math:`c` = ``decay_rate``, :math:`d` = ``clip_threshold``; the gradient is first clipped
    by value and by global norm as in :class:`LOMO`. Rank-1 tensors keep a full second moment.

    Differences from the torch version (see :class:`LOMO` for the fused backward): the gradient
    tree is given, so ``loss_scale`` (the reference multiplies the loss by it before
    ``backward`` and divides the gradients by it again) has no effect here; it is accepted and
    validated for signature compatibility. The reference supports only 1-D and 2-D parameters;
    tensors of rank >= 3 are factored here over their last two axes (as in :class:`AdaFactor`)
    and scalars keep a full second moment.
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
