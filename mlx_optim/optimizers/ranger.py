"""The Ranger line: RAdam/Adam variants with built-in Lookahead.

Ranger and Ranger21 follow pytorch_optimizer; Ranger2020 is Ranger with the Keras
seed's ``gc_loc`` option; RangerQH and RangerVA follow ``pytorch_ranger`` 0.1.1.
Lookahead's slow weights live in per-parameter state (``slow_buffer`` /
``lookahead_params``) and the every-``k`` synchronisation is an ``mx.where`` on the
global step, so the whole step compiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.features import sn_expand, sn_reduce
from mlx_optim.registry import register


# ---------------------------------------------------------------------------- shared pure functions
def lookahead_merge(
    p: mx.array, slow: mx.array, alpha, sync: mx.array, *, chained: bool = True
) -> tuple[mx.array, mx.array]:
    """Lookahead (Zhang et al., 2019): where ``sync``, ``slow <- slow + alpha (p - slow)`` and ``p <- slow``.

    Returns ``(p, slow)``; both are unchanged where ``sync`` is false. Both forms give the same values.
    ``chained`` reads the new ``p`` from the new ``slow`` (equal where ``sync``), so the parameter consumes the
    slow-weight output and ``mx.compile`` can update both in one kernel with the step before it
    (:mod:`mlx_optim.fusion`). It is one operation deeper; ``chained=False`` suits updates already too deep to
    fuse with the merge, which then cost three small kernels (the merge and one select per output) instead of
    cutting the update itself into more pieces.
    """
    merged = slow + alpha * (p - slow)
    if chained:
        slow = mx.where(sync, merged, slow)
        return mx.where(sync, slow, p), slow
    return mx.where(sync, merged, p), mx.where(sync, merged, slow)


# ---------------------------------------------------------------------------- Ranger
@register
class Ranger(Optimizer):
    r"""Ranger (Wright, 2019): RAdam + Lookahead + gradient centralization, pytorch_optimizer semantics.

    The gradient is centralized (``use_gc``; only for ndim > 3 with ``gc_conv_only``),
    weight decay is decoupled by default, then a RAdam step with rectification
    :math:`r_t` (see :class:`~mlx_optim.optimizers.adam.RAdam`); every ``k`` steps the
    Lookahead slow weights :math:`\phi` are merged:

    .. math::
        p_t = p_{t-1} - \frac{\eta\, r_t}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t} + \epsilon},\qquad
        t \bmod k = 0:\ \phi \leftarrow \phi + \alpha (p_t - \phi),\ p_t \leftarrow \phi

    Reference quirk kept for parity: while the SMA length is below ``n_sma_threshold``
    and ``degenerated_to_sgd=False``, pytorch_optimizer's Ranger uses :math:`r_t=-1`
    in ``p -= step_size * m`` (RAdam skips that step instead), i.e. it moves *along*
    the first moment for the first few steps. ``adam_debias``, ``adanorm`` and
    ``adanorm_r`` are the reference's ``**kwargs`` options.
    Papers: RAdam (arXiv 1908.03265), Lookahead (arXiv 1907.08610), GC (arXiv 2004.01461).
    The Keras seed's defaults equal the reference's.
    """

    name = "ranger"
    family = "ranger"
    reference = "pytorch_optimizer.Ranger"
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: element-wise second moments (sn hook)

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.95, 0.999),
        alpha: Tunable = 0.5,
        k: int = 6,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = False,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        use_gc: bool = True,
        gc_conv_only: bool = False,
        eps: Tunable = 1e-5,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("alpha", alpha, 0.0, 1.0)
        self._check("k", k, 0, None, "(]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.k, self.n_sma_threshold, self.degenerated_to_sgd = int(k), n_sma_threshold, degenerated_to_sgd
        self.use_gc, self.gc_conv_only = use_gc, gc_conv_only
        self.adam_debias, self.adanorm = adam_debias, adanorm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["slow_buffer"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        rt, n_sma = F.rectification(hp.beta2, hp.step, self.n_sma_threshold, hp.one_minus_beta2)
        hp.rectified = n_sma >= self.n_sma_threshold
        step_size = hp.lr * mx.where(hp.rectified, rt, 1.0 if self.degenerated_to_sgd else -1.0)
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size
        hp.sync = F.every(hp.step, self.k)

    def direction(self, m: mx.array, v: mx.array) -> mx.array:
        """The RAdam direction: ``m / (sqrt(v) + eps)`` once rectified, else ``m``."""
        return mx.where(self.hp.rectified, m / (mx.sqrt(v) + self.hp.eps), m)

    def transform_step(self, g: mx.array, p: mx.array, new: mx.array, state: dict) -> mx.array:
        """Hook for :mod:`mlx_optim.features`: the step before the built-in Lookahead (identity here)."""
        return new

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.use_gc:
            g = self.apply_gc(g, conv_only=self.gc_conv_only)
        p0 = p
        p, g = self.decay_weights(p, g)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = hp.ema(state["exp_avg"], s_grad, "beta1")
        v = F.ema(state["exp_avg_sq"], sn_reduce(mx.square(g), state["exp_avg_sq"]), hp.beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        p = p - hp.step_size * self.direction(m, sn_expand(v, p.shape))
        p = self.transform_step(g, p0, p, state)
        p, state["slow_buffer"] = lookahead_merge(p, state["slow_buffer"], hp.alpha, hp.sync)
        return p


@register
class Ranger2020(Ranger):
    r"""Ranger with the ``gc_loc`` option of lessw2020's ``ranger2020.py`` (the Keras seed's Ranger2020).

    ``gc_loc=True`` (default) centralizes the gradient before the moments, exactly
    :class:`Ranger`; ``gc_loc=False`` leaves the gradient alone and centralizes the
    update direction (:math:`m_t/(\sqrt{v_t}+\epsilon)`, or :math:`m_t` before
    rectification) instead. Everything else is pytorch_optimizer's Ranger (parity
    reference for ``gc_loc=True``; ``gc_loc=False`` is checked against a torch
    transcription of Ranger with the option). Deliberately *not* ported from
    ``ranger2020.py``: its strict ``N_sma > threshold``, its SGD-momentum fallback
    and its weight decay added to the update (this class keeps Ranger's decoupled
    decay and rectification rules).
    """

    name = "ranger2020"
    reference = "pytorch_optimizer.Ranger (gc_loc=True); Ranger + gc_loc transcription otherwise"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.95, 0.999),
        alpha: Tunable = 0.5,
        k: int = 6,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = False,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        use_gc: bool = True,
        gc_conv_only: bool = False,
        eps: Tunable = 1e-5,
        maximize: bool = False,
        *,
        gc_loc: bool = True,
        adam_debias: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate, betas, alpha, k, n_sma_threshold, degenerated_to_sgd, weight_decay, weight_decouple,
            fixed_decay, gc_loc and use_gc, gc_conv_only, eps, maximize, adam_debias=adam_debias, adanorm=adanorm,
            adanorm_r=adanorm_r, state_dtype=state_dtype,
        )  # fmt: skip
        self.gc_loc = gc_loc
        self.gc_update = use_gc and not gc_loc

    def direction(self, m: mx.array, v: mx.array) -> mx.array:
        d = super().direction(m, v)
        return self.apply_gc(d, conv_only=self.gc_conv_only) if self.gc_update else d


# ---------------------------------------------------------------------------- Ranger21
def pn_momentum(grad_ma: mx.array, neg_grad_ma: mx.array, beta0) -> mx.array:
    """Positive-negative momentum: ``((1 + beta0) m_this - beta0 m_other) / sqrt((1+beta0)^2 + beta0^2)``."""
    return ((1 + beta0) * grad_ma - beta0 * neg_grad_ma) / mx.sqrt(mx.square(1 + beta0) + mx.square(beta0))


@register
class Ranger21(Optimizer):
    r"""Ranger21 (Wright & Demeure, 2021), pytorch_optimizer semantics.

    Per step: gradients are AGC-clipped, centralized and normalized (``preprocess``);
    the second moment :math:`v_t` uses the preprocessed gradient and the global
    :math:`\sigma = \sqrt{(1 + \sum v_t/(1-\beta_2^t)) / N}`; stable decoupled weight
    decay :math:`p \leftarrow p(1 - \eta_t\lambda/\sigma)`; norm loss
    :math:`p \leftarrow p(1 - 2\eta_t \nu (1 - 1/(\lVert p\rVert_{unit}+\epsilon)))`;
    positive-negative momentum with two buffers that swap roles each step
    (:math:`\hat m \leftarrow \hat m + (1-\beta_1^2)(g - \hat m)` on the buffer of
    this step's parity), AMSGrad + softplus denominator, and Lookahead every
    ``lookahead_merge_time`` steps (:math:`p \leftarrow \alpha p + (1-\alpha)\phi`,
    :math:`\phi \leftarrow p`). The learning rate :math:`\eta_t` follows the built-in
    linear warm-up / warm-down schedule unless ``disable_lr_scheduler``.

    .. math::
        p_t = p - \frac{\eta_t}{1-\beta_1^t}
        \frac{\mathrm{pn}(m^{+}, m^{-})}{\mathrm{softplus}(\sqrt{\max_s v_s}/\sqrt{1-\beta_2^t} + \epsilon)}

    Reference quirks kept for parity: the gradient is preprocessed (centralize +
    normalize) a second time before the momentum update; with
    ``weight_decouple=False`` no weight decay is applied at all; the warm-down
    starts from the learning rate (the reference uses the constructor ``lr``, the
    same unless ``learning_rate`` is a schedule). Paper: arXiv 2106.13731.
    """

    name = "ranger21"
    family = "ranger"
    reference = "pytorch_optimizer.Ranger21"
    subset_norm_keys = ("variance_ma", "max_variance_ma")  # mlx_optim.features: sn hook

    def __init__(
        self,
        num_iterations: int,
        learning_rate: Tunable = 1e-3,
        beta0: Tunable = 0.9,
        betas: Sequence[float] = (0.9, 0.999),
        use_softplus: bool = True,
        beta_softplus: Tunable = 50.0,
        disable_lr_scheduler: bool = False,
        num_warm_up_iterations: int | None = None,
        num_warm_down_iterations: int | None = None,
        warm_down_min_lr: Tunable = 3e-5,
        agc_clipping_value: Tunable = 1e-2,
        agc_eps: Tunable = 1e-3,
        centralize_gradients: bool = True,
        normalize_gradients: bool = True,
        lookahead_merge_time: int = 5,
        lookahead_blending_alpha: Tunable = 0.5,
        weight_decay: Tunable = 1e-4,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        norm_loss_factor: Tunable = 1e-4,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._check("num_iterations", num_iterations, 0, None, "(]")
        self._hyper("warm_down_min_lr", warm_down_min_lr, 0.0)
        self._betas(betas, 2)
        self._hyper("beta0", beta0, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("agc_clipping_value", agc_clipping_value, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("agc_eps", agc_eps, 0.0)
        self._hyper("beta_softplus", beta_softplus)
        self._hyper("lookahead_blending_alpha", lookahead_blending_alpha)
        self._hyper("norm_loss_factor", norm_loss_factor)
        self._check("lookahead_merge_time", lookahead_merge_time, 0, None, "(]")
        self.use_softplus, self.disable_lr_scheduler = use_softplus, disable_lr_scheduler
        self.centralize_gradients, self.normalize_gradients = centralize_gradients, normalize_gradients
        self.lookahead_merge_time = int(lookahead_merge_time)
        self.weight_decouple, self.fixed_decay, self.adam_debias = weight_decouple, fixed_decay, adam_debias
        num_iterations = int(num_iterations)
        if num_warm_up_iterations is None:  # the reference's build_warm_up_iterations
            warm_up = math.ceil(2.0 / (1.0 - betas[1]))
            num_warm_up_iterations = int(0.22 * num_iterations) if warm_up / num_iterations > 0.45 else warm_up
        if num_warm_down_iterations is None:  # the reference's build_warm_down_iterations
            num_warm_down_iterations = num_iterations - int(0.72 * num_iterations)
        self.num_warm_up_iterations = int(num_warm_up_iterations)
        self.num_warm_down_iterations = int(num_warm_down_iterations)
        self.start_warm_down = num_iterations - self.num_warm_down_iterations

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grad_ma"] = self.zeros(parameter)
        state["variance_ma"] = self.zeros(parameter)
        state["lookahead_params"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        state["neg_grad_ma"] = self.zeros(parameter)
        state["max_variance_ma"] = self.zeros(parameter)

    def scheduled_lr(self, lr: mx.array, step: mx.array, min_lr: mx.array) -> mx.array:
        """The built-in linear warm-up, then linear warm-down to ``warm_down_min_lr``."""
        if self.disable_lr_scheduler:
            return lr
        n_up = self.num_warm_up_iterations
        if n_up > 0:
            lr_up = mx.where(step > n_up, lr, lr * mx.minimum(step / n_up, 1.0))
        else:
            lr_up = lr
        pct = mx.minimum(mx.maximum(step + 1 - self.start_warm_down, 1.0) / (self.num_warm_down_iterations + 1), 1.0)
        lr_down = mx.maximum(lr - (lr - min_lr) * pct, min_lr)
        return mx.where(step < self.start_warm_down, lr_up, lr_down)

    def step_scalars(self, hp) -> None:
        hp.bc2 = hp.bias_correction("beta2")
        hp.bc2_sqrt = mx.sqrt(hp.bc2)
        hp.r_lr = self.scheduled_lr(hp.lr, hp.step, hp.warm_down_min_lr)
        hp.step_size = hp.r_lr if self.adam_debias else hp.r_lr / hp.bias_correction("beta1")
        hp.odd = mx.remainder(hp.step, 2) == 1
        hp.sync = F.every(hp.step, self.lookahead_merge_time)

    def transform_step(self, g: mx.array, p: mx.array, new: mx.array, state: dict) -> mx.array:
        """Hook for :mod:`mlx_optim.features`: the step before the built-in Lookahead (identity here)."""
        return new

    def preprocess(self, g: mx.array) -> mx.array:
        if self.centralize_gradients:
            g = F.centralize(g)
        if self.normalize_gradients:
            g = F.normalize_gradient(g)
        return g

    def clipped(self, g: mx.array, p: mx.array) -> mx.array:
        """The gradient after AGC and one preprocessing pass (what the second moment sees)."""
        return self.preprocess(F.agc(p, g, self.hp.agc_eps, self.hp.agc_clipping_value))

    def prepare(self, gradients, parameters) -> None:
        """Update every ``variance_ma`` and compute the global variance normalizer ``hp.sigma``."""
        hp = self.hp
        total, count = mx.array(1.0, mx.float32), 0
        for _, g, p, state in leaves(gradients, parameters, self.state):
            dtype = self.compute_dtype(p)
            g, p = g.astype(dtype), p.astype(dtype)
            if self.maximize:
                g = -g
            g = self.clipped(g, p)
            v = F.ema(state["variance_ma"], sn_reduce(mx.square(g), state["variance_ma"]), hp.beta2)
            state["variance_ma"] = v
            total = total + mx.sum(sn_expand(v, g.shape) / hp.bc2).astype(mx.float32)
            count += g.size
        hp.sigma = mx.sqrt(total / max(count, 1))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g = self.preprocess(self.clipped(g, p))  # the reference preprocesses twice
        p0 = p
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, ratio=1 / hp.sigma, lr=hp.r_lr)
        correction = 2 * hp.norm_loss_factor * (1 - 1 / (F.unit_norm(p) + hp.eps))
        p = p * (1 - hp.r_lr * correction)
        v_max = self.apply_amsgrad(state, state["variance_ma"], "max_variance_ma")
        denom = mx.sqrt(sn_expand(v_max, p.shape)) / hp.bc2_sqrt + hp.eps
        if self.use_softplus:
            denom = F.softplus(denom, hp.beta_softplus)
        this = mx.where(hp.odd, state["grad_ma"], state["neg_grad_ma"])
        other = mx.where(hp.odd, state["neg_grad_ma"], state["grad_ma"])
        this = this + (1 - mx.square(hp.beta1)) * (g - this)
        state["grad_ma"] = mx.where(hp.odd, this, state["grad_ma"])
        state["neg_grad_ma"] = mx.where(hp.odd, state["neg_grad_ma"], this)
        p = p - hp.step_size * pn_momentum(this, other, hp.beta0) / denom
        p = self.transform_step(g, p0, p, state)
        # Lookahead: p <- alpha p + (1 - alpha) slow, slow <- p
        slow = state["lookahead_params"]
        p, state["lookahead_params"] = lookahead_merge(p, slow, hp.lookahead_blending_alpha, hp.sync)
        return p


# ---------------------------------------------------------------------------- pytorch_ranger
@register
class RangerQH(Optimizer):
    r"""RangerQH (lessw2020): QHAdam (Ma & Yarats, 2019) + Lookahead, ``pytorch_ranger`` semantics.

    The moments use QHAdam's bias-free weights :math:`w_{i,t} = 1 + \beta_i w_{i,t-1}`,
    :math:`\bar\beta_{i,t} = 1 - 1/w_{i,t}` (kept in ``state["beta1_weight"]`` /
    ``state["beta2_weight"]``):

    .. math::
        m_t = \bar\beta_{1,t} m_{t-1} + (1-\bar\beta_{1,t}) g_t,\quad
        v_t = \bar\beta_{2,t} v_{t-1} + (1-\bar\beta_{2,t}) g_t^2 \\
        p_t = p_{t-1} - \eta \frac{(1-\nu_1) g_t + \nu_1 m_t}{\sqrt{(1-\nu_2) g_t^2 + \nu_2 v_t} + \epsilon}

    then Lookahead every ``k`` steps. ``weight_decay`` is L2 unless
    ``decouple_weight_decay`` (``p *= 1 - lr wd``). Reference quirk kept for parity:
    with decoupled decay the slow weights start from the parameters *after* the
    first step's decay. The reference has no ``maximize``.
    Papers: arXiv 1810.06801, 1907.08610.
    """

    name = "rangerqh"
    family = "ranger"
    reference = "pytorch_ranger.RangerQH"
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: sn hook
    # the QH step (8 operations deep below the new p) under Lookahead's merge and selects exceeds mx.compile's
    # depth of 11, and the chained merge cuts the moments into 5 pieces: step, merge, one select per output
    ops_per_leaf = 4

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        nus: Sequence[float] = (0.7, 1.0),
        weight_decay: Tunable = 0.0,
        k: int = 6,
        alpha: Tunable = 0.5,
        decouple_weight_decay: bool = False,
        eps: Tunable = 1e-8,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._betas(betas, 2)
        nus = tuple(nus)
        if len(nus) != 2:
            raise ValueError(f"RangerQH: nus={nus!r} must have 2 values")
        self._hyper("nu1", nus[0])
        self._hyper("nu2", nus[1])
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("k", k, 0, None, "(]")
        self._hyper("alpha", alpha)
        self._hyper("eps", eps, 0.0)
        self.k, self.decouple_weight_decay = int(k), decouple_weight_decay
        self.state["beta1_weight"] = mx.array(0.0, mx.float32)
        self.state["beta2_weight"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["slow_buffer"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def step_scalars(self, hp) -> None:
        w1 = 1.0 + hp.beta1 * self.state["beta1_weight"]
        w2 = 1.0 + hp.beta2 * self.state["beta2_weight"]
        self.state["beta1_weight"], self.state["beta2_weight"] = w1, w2
        hp.beta1_adj, hp.beta2_adj = 1.0 - 1.0 / w1, 1.0 - 1.0 / w2
        # the complements F.ema and the QH mixes would compute per leaf (mlx_optim.fusion)
        hp.c1, hp.c2 = 1.0 - hp.beta1_adj, 1.0 - hp.beta2_adj
        hp.nu1_c, hp.nu2_c = hp.one_minus_nu1, hp.one_minus_nu2
        hp.sync = F.every(hp.step, self.k)
        hp.first = hp.step == 1

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.decouple_weight_decay)
        if self.decouple_weight_decay:  # the reference copies the slow weights after the first decay
            state["slow_buffer"] = mx.where(hp.first, p, state["slow_buffer"])
        g2 = sn_reduce(mx.square(g), state["exp_avg_sq"])
        m = hp.beta1_adj * state["exp_avg"] + hp.c1 * g  # = F.ema(exp_avg, g, beta1_adj)
        v = hp.beta2_adj * state["exp_avg_sq"] + hp.c2 * g2
        state["exp_avg"], state["exp_avg_sq"] = m, v
        num = hp.nu1 * m + hp.nu1_c * g
        denom = mx.sqrt(sn_expand(hp.nu2 * v + hp.nu2_c * g2, p.shape)) + hp.eps
        p = p - hp.lr * num / denom
        # chained=False: the step is too deep to share a kernel with the merge (see ops_per_leaf above)
        p, state["slow_buffer"] = lookahead_merge(p, state["slow_buffer"], hp.alpha, hp.sync, chained=False)
        return p


@register
class RangerVA(Optimizer):
    r"""RangerVA (lessw2020, version 9.13.19A): Adam + Lookahead + calibrated (softplus) denominator.

    ``pytorch_ranger`` semantics, including its quirks (kept for parity): the second
    moment is decayed twice per step,
    :math:`v_t = \beta_2(\beta_2 v_{t-1} + (1-\beta_2) g_t^2) + (1-\beta_2)\,\tau(g_t)`
    with :math:`\tau(g) = g^2` (``grad_transformer='square'``) or :math:`|g|` (``'abs'``);
    ``amsgrad`` keeps the running max :math:`\hat v_t`; weight decay is decoupled,
    ``p *= 1 - lr wd``; ``n_sma_threshhold`` is unused (no rectification).

    .. math::
        p_t = p_{t-1} - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t}
              \frac{m_t}{\operatorname{softplus}_{\text{smooth}}(\sqrt{\hat v_t})}

    (no square root for ``'abs'``). With ``transformer`` other than ``'softplus'``
    the step is :math:`\eta^2\sqrt{1-\beta_2^t}/(1-\beta_1^t)\; m_t/(\sqrt{v_t}+\epsilon)`
    (the reference multiplies by ``lr`` twice there; ``eps`` is only used in that branch).
    Lookahead every ``k`` steps. The reference has no ``maximize``.
    Papers: arXiv 1908.00700 (calibrated adaptive LR), 1907.08610.
    """

    name = "rangerva"
    family = "ranger"
    reference = "pytorch_ranger.RangerVA"
    subset_norm_keys = ("exp_avg_sq", "max_exp_avg_sq")  # mlx_optim.features: sn hook
    # twice-decayed v, AMSGrad, sqrt and softplus (5 deep) under the step and Lookahead exceed mx.compile's depth
    # of 11: one kernel up to sqrt(max v), one for the rest
    ops_per_leaf = 2

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        alpha: Tunable = 0.5,
        k: int = 6,
        n_sma_threshhold: int = 5,
        betas: Sequence[float] = (0.95, 0.999),
        eps: Tunable = 1e-5,
        weight_decay: Tunable = 0.0,
        amsgrad: bool = True,
        transformer: str = "softplus",
        smooth: Tunable = 50.0,
        grad_transformer: str = "square",
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        if not callable(learning_rate):
            self._check("learning_rate", learning_rate, 0.0, None, "(]")
        self._hyper("alpha", alpha, 0.0, 1.0)
        self._check("k", k, 1)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0, None, "(]")
        self._hyper("weight_decay", weight_decay)
        self._hyper("smooth", smooth)
        self._choice("grad_transformer", grad_transformer, ("square", "abs"))
        self.k, self.n_sma_threshhold, self.amsgrad = int(k), n_sma_threshhold, amsgrad
        self.transformer, self.grad_transformer = transformer, grad_transformer

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.amsgrad:
            state["max_exp_avg_sq"] = self.zeros(parameter)
        state["slow_buffer"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")
        hp.step_size_lr = hp.step_size * hp.lr
        hp.c1, hp.c2 = hp.one_minus_beta1, 1 - hp.beta2  # F.ema's complements, once per step (mlx_optim.fusion)
        hp.sync = F.every(hp.step, self.k)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        sq = state["exp_avg_sq"]
        g2 = sn_reduce(mx.square(g), sq)
        v = hp.beta2 * sq + hp.c2 * g2  # = F.ema(sq, g2, beta2)
        m = hp.beta1 * state["exp_avg"] + hp.c1 * g
        v = hp.beta2 * v + hp.c2 * (g2 if self.grad_transformer == "square" else sn_reduce(mx.abs(g), sq))
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom_c = self.apply_amsgrad(state, v, "max_exp_avg_sq") if self.amsgrad else v
        denom_c, v = sn_expand(denom_c, p.shape), sn_expand(v, p.shape)
        if self.grad_transformer == "square":
            denom_c = mx.sqrt(denom_c)
        p, _ = self.apply_weight_decay(p, g, decouple=True)
        if self.transformer == "softplus":
            p = p - hp.step_size * m / F.softplus(denom_c, hp.smooth)
        else:
            p = p - hp.step_size_lr * m / (mx.sqrt(v) + hp.eps)
        p, state["slow_buffer"] = lookahead_merge(p, state["slow_buffer"], hp.alpha, hp.sync)
        return p


# ---------------------------------------------------------------------------- Ranger25
@register
class Ranger25(Optimizer):
    r"""Ranger25: ADOPT + AdEMAMix + Cautious + StableAdamW/Adam-atan2 + OrthoGrad + AGC + Lookahead.

    No maintained PyTorch reference exists (pytorch_optimizer 4.1.0 dropped its
    ``Ranger25``). This port follows the Keras seed's description (seed 000,
    "Ranger25") with the math of the earlier pytorch_optimizer ``Ranger25`` whose
    defaults the seed repeats; its parity reference is a NumPy transcription in
    ``tests/parity/rows/ranger.py``. Per parameter and step:
    OrthoGrad (optional), weight decay (decoupled by default), AGC
    (``agc_eps=1e-3``, ``clip=1e-2``), then with the ADOPT-normalized gradient
    :math:`\tilde g = \operatorname{clip}(g / \max(\sqrt{v_{t-1}}, \epsilon), \pm t^{1/4})`:

    .. math::
        m_t = \beta_1 m + (1-\beta_1)\tilde g,\quad v_t = \beta_2 v + (1-\beta_2) g^2,\quad
        s_t = \beta_{3,t} s + (1-\beta_{3,t})\tilde g \\
        u_t = \operatorname{cautious}(m_t) + \alpha_t s_t,\quad
        p_t = p - \frac{\eta}{(1-\beta_1^t)\,\mathrm{rms}_t}
              \frac{u_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    with :math:`\mathrm{rms}_t` the StableAdamW RMS (1 without ``stable_adamw``),
    AdEMAMix's schedules for :math:`\alpha_t, \beta_{3,t}` when ``t_alpha_beta3`` is
    set, ``eps=None`` with ``stable_adamw=False`` selecting Adam-atan2
    (:math:`\operatorname{atan2}(u_t, \sqrt{\hat v_t})`; ``eps=None`` with ``stable_adamw=True``
    means ``eps=1e-8`` without the RMS, as in the earlier code), and Lookahead every
    ``lookahead_merge_time`` steps.
    Deviations: the earlier pytorch_optimizer code divided one shared ``step_size``
    by every parameter's RMS in turn (compounding across parameters); here each
    parameter uses its own RMS. The seed's ``sn``/``subset_size`` (subset second
    moments) and ``DAdapt``/``d0``/``growth_rate`` options are not ported: the
    seed does not define their math. No ``maximize`` (neither source has one).
    """

    name = "ranger25"
    family = "ranger"
    reference = "NumPy transcription (Keras seed description / earlier pytorch_optimizer Ranger25)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.98, 0.9999),
        weight_decay: Tunable = 1e-3,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        alpha: Tunable = 5.0,
        t_alpha_beta3: float | None = None,
        lookahead_merge_time: int = 5,
        lookahead_blending_alpha: Tunable = 0.5,
        cautious: bool = True,
        stable_adamw: bool = True,
        orthograd: bool = True,
        eps: Tunable | None = 1e-8,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._betas(betas, 3)
        self._hyper("alpha", alpha, 0.0)
        if t_alpha_beta3 is not None:
            self._check("t_alpha_beta3", t_alpha_beta3, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._check("lookahead_merge_time", lookahead_merge_time, 0, None, "(]")
        self._hyper("lookahead_blending_alpha", lookahead_blending_alpha, 0.0, 1.0)
        self.atan2 = eps is None and not stable_adamw
        self._hyper("eps", 1e-8 if eps is None else eps, 0.0)
        self.t_alpha_beta3 = None if t_alpha_beta3 is None else float(t_alpha_beta3)
        self.lookahead_merge_time = int(lookahead_merge_time)
        self.cautious, self.orthograd = cautious, orthograd
        self.stable_adamw = stable_adamw and eps is not None

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["exp_avg_slow"] = self.zeros(parameter)
        state["slow_momentum"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.clip = mx.power(hp.step, 0.25)
        hp.alpha_t, hp.beta3_t = F.ademamix_schedules(hp.step, self.t_alpha_beta3, hp.alpha, hp.beta1, hp.beta3)
        hp.sync = F.every(hp.step, self.lookahead_merge_time)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.orthograd:
            g = F.orthogonalize(p, g)
        p, g = self.decay_weights(p, g)
        g = F.agc(p, g, 1e-3, 1e-2)
        v = state["exp_avg_sq"]
        normed = mx.clip(g / mx.maximum(mx.sqrt(v), hp.eps), -hp.clip, hp.clip)
        m = hp.ema(state["exp_avg"], normed, "beta1")
        v = hp.ema(v, mx.square(g), "beta2")
        slow = F.ema(state["exp_avg_slow"], normed, hp.beta3_t)
        state["exp_avg"], state["exp_avg_sq"], state["exp_avg_slow"] = m, v, slow
        update = self.apply_cautious(m, g) if self.cautious else m
        update = update + hp.alpha_t * slow
        step_size = hp.step_size / F.stable_adamw_rms(g, v) if self.stable_adamw else hp.step_size
        denom = mx.sqrt(v) / hp.bc2_sqrt
        if self.atan2:
            p = p - step_size * mx.arctan2(update, denom)
        else:
            p = p - step_size * update / (denom + hp.eps)
        slow = state["slow_momentum"]  # chained=False: fewer kernels here (lookahead_merge)
        p, state["slow_momentum"] = lookahead_merge(p, slow, hp.lookahead_blending_alpha, hp.sync, chained=False)
        return p
