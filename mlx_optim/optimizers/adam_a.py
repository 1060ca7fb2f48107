"""Adam variants from pytorch_optimizer (group A).

AdaBelief, AdaBound / AdaBoundW, AdaMod, AdamP, AdamS, AdaNorm, AdaPNM, PAdam,
Yogi and MSVAG, each parity-checked against its pytorch_optimizer 4.1.0 class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register

# pytorch_optimizer's ``apply_ams_bound`` adds this to the second moment before the square root.
AMS_BOUND_EPS = 1e-15


def _betas3(opt: Optimizer, betas: Sequence[float]) -> None:
    """Three betas as pytorch_optimizer validates them: beta1, beta2 in [0, 1), beta3 in [0, 1]."""
    betas = tuple(betas)
    if len(betas) != 3:
        raise ValueError(f"{type(opt).__name__}: betas={betas!r} must have 3 values")
    opt._betas(betas[:2], 2)
    opt._hyper("beta3", betas[2], 0.0, 1.0, "[]")


def adamp_projection(p, g, perturb, delta, wd_ratio, eps) -> tuple[mx.array, mx.array]:
    """AdamP's projection: drop the radial component of ``perturb`` for scale-invariant weights.

    A weight counts as scale invariant per output channel (rows of ``p``) when the
    largest ``|cos(g, p)|`` over channels is below ``delta / sqrt(channel size)``,
    else as a whole layer when ``|cos(g, p)| < delta / sqrt(p.size)``. Returns the
    projected update and the weight-decay ratio (``wd_ratio`` if projected, else 1).
    """
    n = p.shape[0]
    expand = (n,) + (1,) * (p.ndim - 1)
    p_rows, g_rows = p.reshape(n, -1), g.reshape(n, -1)

    def row_norm(x):
        return mx.sqrt(mx.sum(mx.square(x), axis=1))

    p_row_norm, p_norm = row_norm(p_rows), mx.sqrt(mx.sum(mx.square(p)))
    cos_rows = mx.abs(mx.sum(g_rows * p_rows, axis=1)) / (
        mx.maximum(row_norm(g_rows), eps) * mx.maximum(p_row_norm, eps)
    )
    cos_layer = mx.abs(mx.sum(g * p)) / (mx.maximum(mx.sqrt(mx.sum(mx.square(g))), eps) * mx.maximum(p_norm, eps))
    channel = mx.max(cos_rows) < delta / math.sqrt(p_rows.shape[1])
    layer = cos_layer < delta / math.sqrt(p.size)

    p_n_channel = p / (p_row_norm + eps).reshape(expand)
    radial_channel = mx.sum((p_n_channel * perturb).reshape(n, -1), axis=1).reshape(expand)
    p_n_layer = p / (p_norm + eps)
    radial_layer = mx.sum(p_n_layer * perturb)
    radial = mx.where(channel, p_n_channel * radial_channel, mx.where(layer, p_n_layer * radial_layer, 0.0))
    ratio = mx.where(channel | layer, wd_ratio, 1.0)
    return perturb - radial, ratio


@register
class AdaBelief(Optimizer):
    r"""AdaBelief (Zhuang et al., 2020): Adam whose step adapts to the *belief* in the gradient.

    The second moment tracks the squared prediction error of the gradient instead of
    the squared gradient:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{s_t}/\sqrt{1-\beta_2^t} + \epsilon}

    With ``rectify`` the step is RAdam's rectified one (momentum SGD, or no step
    unless ``degenerated_to_sgd``, while the SMA length is below ``n_sma_threshold``).
    ``ams_bound`` uses the running maximum of :math:`s_t`; ``adanorm`` rescales the
    gradient fed to :math:`m_t`; ``adam_debias`` drops the first-moment correction.
    Weight decay is decoupled by default. Paper: "AdaBelief Optimizer: Adapting
    Stepsizes by the Belief in Observed Gradients", NeurIPS 2020.
    The Keras seed defaults to ``rectify=True``; we keep the reference's ``rectify=False``.
    """

    name = "adabelief"
    family = "adam"
    reference = "pytorch_optimizer.AdaBelief"
    # m is reached last through p' <- denominator <- s <- (g - m), 10 operations deep: mx.compile cuts m's two
    # products off into kernels of their own
    ops_per_leaf = 3

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = True,
        ams_bound: bool = False,
        eps: Tunable = 1e-16,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.rectify, self.n_sma_threshold, self.degenerated_to_sgd = rectify, n_sma_threshold, degenerated_to_sgd
        self.ams_bound, self.adanorm, self.adam_debias = ams_bound, adanorm, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_var"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_var"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        step_size = hp.lr
        if self.rectify:
            rt, n_sma = F.rectification(hp.beta2, hp.step, self.n_sma_threshold, hp.one_minus_beta2)
            hp.rectified = n_sma >= self.n_sma_threshold
            step_size = hp.lr * mx.where(hp.rectified, rt, 1.0 if self.degenerated_to_sgd else -1.0)
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.c1, hp.c2 = hp.one_minus_beta1, hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = hp.beta1 * state["exp_avg"] + hp.c1 * s_grad  # F.ema
        s = (hp.beta2 * state["exp_avg_var"] + hp.c2 * mx.square(g - m)) + hp.eps
        state["exp_avg"], state["exp_avg_var"] = m, s
        if self.ams_bound:
            s = self.apply_amsgrad(state, s, "max_exp_avg_var")
        if not self.rectify:
            return p - hp.step_size * m / (mx.sqrt(s) / hp.bc2_sqrt + hp.eps)
        adaptive = m / (mx.sqrt(s) + hp.eps)
        direction = mx.where(hp.rectified, adaptive, mx.where(hp.step_size > 0, m, 0.0))
        return p - hp.step_size * direction


@register
class AdaBound(Optimizer):
    r"""AdaBound (Luo et al., 2019): Adam whose per-coordinate step is clipped to bounds converging to SGD.

    .. math::
        \eta^*_t = \operatorname{clip}\!\Big(\frac{\eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{v_t}+\epsilon},
            \eta_l(t), \eta_u(t)\Big),\quad p_t = p_{t-1} - \eta^*_t m_t \\
        \eta_l(t) = \eta_f \big(1 - \tfrac{1}{\gamma t + 1}\big),\quad
        \eta_u(t) = \eta_f \big(1 + \tfrac{1}{\gamma t}\big),\quad
        \eta_f = \text{final\_lr} \cdot \eta / \eta_0

    :math:`\eta_0` is the initial learning rate (kept in ``state["base_lr"]``, so a
    learning-rate schedule scales ``final_lr`` as in the reference; an initial 0 is
    replaced by the first positive rate). ``ams_bound`` is AMSBound. Paper: "Adaptive
    Gradient Methods with Dynamic Bound of Learning Rate", ICLR 2019. Weight decay is
    decoupled by default as in the reference; the Keras seed's ``AdaBound`` uses L2
    (``weight_decouple=False``) and names the decoupled one ``AdaBoundW``. ``adam_debias`` drops the
    :math:`1-\beta_1^t` factor from the step size (AdamD); the reference reads it from the parameter group
    (``group.get("adam_debias")``): its constructor does not forward it.
    """

    name = "adabound"
    family = "adam"
    reference = "pytorch_optimizer.AdaBound"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        final_lr: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        gamma: Tunable = 1e-3,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self.adam_debias = adam_debias
        self._hyper("final_lr", final_lr)
        self._betas(betas, 2)
        self._hyper("gamma", gamma, 0.0, None, "(]")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound
        base_lr = learning_rate(mx.array(0)) if callable(learning_rate) else learning_rate
        self.state["base_lr"] = mx.array(base_lr, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        base_lr = self.state["base_lr"]
        base_lr = mx.where((base_lr == 0) & (hp.lr > 0), hp.lr, base_lr)
        self.state["base_lr"] = base_lr
        final_lr = mx.where(base_lr > 0, hp.final_lr * hp.lr / mx.where(base_lr > 0, base_lr, 1.0), 0.0)
        hp.lower_bound = final_lr * (1 - 1 / (hp.gamma * hp.step + 1))
        hp.upper_bound = final_lr * (1 + 1 / (hp.gamma * hp.step))
        bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.step_size = hp.lr * bc2_sqrt if self.adam_debias else hp.lr * bc2_sqrt / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = hp.ema(state["exp_avg"], g, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        step = mx.clip(hp.step_size / F.ams_bound_denom(v, hp.eps), hp.lower_bound, hp.upper_bound)
        return p - step * m


@register
class AdaBoundW(AdaBound):
    """AdaBoundW: AdaBound with decoupled weight decay, as the Keras seed names it.

    Same math, parameters and defaults as :class:`AdaBound`, whose ``weight_decouple=True``
    default it inherits (reference: pytorch_optimizer's ``AdaBound`` with
    ``weight_decouple=True``, also that class's default); the seed's ``amsbound`` is
    ``ams_bound`` here.
    """

    name = "adaboundw"
    reference = "pytorch_optimizer.AdaBound(weight_decouple=True)"


@register
class AdaMod(Optimizer):
    r"""AdaMod (Ding et al., 2019): Adam with per-coordinate step sizes bounded by their own running average.

    .. math::
        \eta_t = \frac{\eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{v_t}+\epsilon},\quad
        s_t = \beta_3 s_{t-1} + (1-\beta_3)\eta_t,\quad
        p_t = p_{t-1} - \min(\eta_t, s_t)\, m_t

    Paper: "An Adaptive and Momental Bound Method for Stochastic Learning", 2019.
    The Keras seed's defaults are ``betas=(0.9, 0.999, 0.999)``; we keep the
    reference's ``(0.9, 0.99, 0.9999)``.
    """

    name = "adamod"
    family = "adam"
    reference = "pytorch_optimizer.AdaMod"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.99, 0.9999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        _betas3(self, betas)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay, self.adam_debias = weight_decouple, fixed_decay, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["exp_avg_lr"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2"))
        hp.step_size = step_size if self.adam_debias else step_size / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = hp.ema(state["exp_avg"], g, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        step = hp.step_size / (mx.sqrt(v) + hp.eps)
        avg_step = hp.ema(state["exp_avg_lr"], step, "beta3")
        state["exp_avg"], state["exp_avg_sq"], state["exp_avg_lr"] = m, v, avg_step
        return p - mx.minimum(step, avg_step) * m


@register
class AdamP(Optimizer):
    r"""AdamP (Heo et al., 2021): Adam that removes the radial part of the update for scale-invariant weights.

    .. math::
        u_t = \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon} m_t,\quad
        u_t \leftarrow u_t - \hat p \langle \hat p, u_t\rangle \text{ if } \max|\cos(g_t, p)| < \delta/\sqrt{d},\quad
        p_t = p_{t-1}(1 - \eta\lambda r) - \frac{\eta}{1-\beta_1^t} u_t

    The projection is tried per output channel, then per layer (tensors with more
    than one dimension only); a projected tensor uses the weight-decay ratio
    ``r = wd_ratio``. Options ``nesterov``, ``use_gc`` (gradient centralization),
    ``adanorm``, ``cautious`` and ``adam_debias`` as in the reference. Paper:
    "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant
    Weights", ICLR 2021. Reference quirk kept for parity: the L2 penalty
    (``weight_decouple=False``) is added to the gradient after the moments were
    updated, so it has no effect.
    """

    name = "adamp"
    family = "adam"
    reference = "pytorch_optimizer.AdamP"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        delta: Tunable = 0.1,
        wd_ratio: Tunable = 0.1,
        nesterov: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        use_gc: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        cautious: bool = False,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("delta", delta)
        self._hyper("wd_ratio", wd_ratio, 0.0, 1.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.weight_decouple, self.fixed_decay, self.nesterov = weight_decouple, fixed_decay, nesterov
        self.use_gc, self.adanorm, self.cautious, self.adam_debias = use_gc, adanorm, cautious, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.use_gc:
            g = self.apply_gc(g)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m, v = hp.ema(state["exp_avg"], s_grad, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        update = self.apply_cautious(m, g) if self.cautious else m
        if self.nesterov:
            update = hp.ema(update, g, "beta1")
        perturb = update * (hp.bc2_sqrt / (mx.sqrt(v) + hp.eps))
        ratio = 1.0
        if p.ndim > 1:
            perturb, ratio = adamp_projection(p, g, perturb, hp.delta, hp.wd_ratio, hp.eps)
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, ratio=ratio)
        return p - hp.step_size * perturb


@register
class AdamS(Optimizer):
    r"""AdamS (Xie et al., 2023): Adam with *stable* weight decay, scaled by the global second moment.

    .. math::
        \bar v_t = \frac{1}{N}\sum_{\text{all params}} \frac{v_t}{1-\beta_2^t},\quad
        p_t = p_{t-1}\Big(1 - \frac{\eta\lambda}{\sqrt{\bar v_t}+\epsilon}\Big)
              - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t/(1-\beta_2^t)}+\epsilon}

    :math:`\bar v_t` is the mean over *every* parameter element, so the moments of
    all tensors are updated first (in :meth:`prepare`) and the step applied after.
    ``weight_decouple=False`` adds an L2 penalty to the gradient instead;
    ``ams_bound``, ``adanorm`` and ``adam_debias`` as in the reference. Paper:
    "On the Overlooked Pitfalls of Weight Decay and How to Mitigate Them", NeurIPS 2023.
    """

    name = "adams"
    family = "adam"
    reference = "pytorch_optimizer.AdamS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 1e-4,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound
        self.adanorm, self.adam_debias = adanorm, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")

    def _moments(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        """Update one tensor's moments; return the sum of its (AMS-bounded) second moment."""
        hp = self.hp
        dtype = self.compute_dtype(p)
        g, p = g.astype(dtype), p.astype(dtype)
        if self.maximize:
            g = -g
        if not self.weight_decouple:
            _, g = self.apply_weight_decay(p, g, decouple=False)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m, v = hp.ema(state["exp_avg"], s_grad, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        return mx.sum(v.astype(mx.float32))

    def _walk(self, g: Any, p: Any, s: Any, path: str) -> tuple[Any, int]:
        if isinstance(g, dict):
            parts = [self._walk(g[k], p[k], s[k], f"{path}{k}.") for k in g]
        elif isinstance(g, (list, tuple)):
            parts = [self._walk(a, b, c, f"{path}{i}.") for i, (a, b, c) in enumerate(zip(g, p, s, strict=False))]
        else:
            self._leaf_path = path[:-1]
            return self._moments(g, p, s), g.size
        return sum((t for t, _ in parts), mx.array(0.0, mx.float32)), sum(n for _, n in parts)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        total, size = self._walk(gradients, parameters, self.state, "")
        if size == 0:
            raise ValueError("AdamS: the gradient tree has no parameters")
        self.hp.decay_ratio = 1.0 / (mx.sqrt(total / self.hp.bc2 / size) + self.hp.eps)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, ratio=hp.decay_ratio)
        v = state["max_exp_avg_sq"] if self.ams_bound else state["exp_avg_sq"]
        return p - hp.step_size * state["exp_avg"] / (mx.sqrt(v / hp.bc2) + hp.eps)


@register
class AdaNorm(Optimizer):
    r"""AdaNorm (Dubey et al., 2023): Adam fed with gradients rescaled to their running norm.

    .. math::
        e_t = r e_{t-1} + (1-r)\lVert g_t\rVert,\quad
        \tilde g_t = \begin{cases} g_t\, e_t/\lVert g_t\rVert & e_t > \lVert g_t\rVert \\ g_t \end{cases} \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\tilde g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\frac{m_t\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}

    The norm :math:`e_t` is kept per tensor. ``ams_bound`` and ``adam_debias`` as
    in the reference. Paper: "AdaNorm: Adaptive Gradient Norm Correction based
    Optimizer for CNNs", WACV 2023.
    """

    name = "adanorm"
    family = "adam"
    reference = "pytorch_optimizer.AdaNorm"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.99),
        r: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("r", r)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound
        self.adam_debias = adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_var"] = self.zeros(parameter)
        state["exp_grad_norm"] = mx.zeros((), mx.float32)
        if self.ams_bound:
            state["max_exp_avg_var"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        s_grad = self.apply_adanorm(g, state, hp.r, key="exp_grad_norm")
        m, v = hp.ema(state["exp_avg"], s_grad, "beta1"), hp.ema(state["exp_avg_var"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_var"] = m, v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v, "max_exp_avg_var")
        return p - hp.step_size * m / (F.ams_bound_denom(v, hp.eps) / hp.bc2_sqrt)


@register
class AdaPNM(Optimizer):
    r"""AdaPNM (Xie et al., 2021): Adam with positive-negative momentum.

    Two momenta are updated on alternate steps (each with :math:`\beta_1^2`); the
    update combines the fresh one :math:`m_t` and the stale one :math:`n_t`:

    .. math::
        m_t = \beta_1^2 m_{t-2} + (1-\beta_1^2) g_t,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}
              \frac{\big((1+\beta_3) m_t - \beta_3 n_t\big)/\sqrt{(1+\beta_3)^2+\beta_3^2}}
                   {(\sqrt{\max_{s\le t} v_s}+\epsilon)/\sqrt{1-\beta_2^t}}

    AMSGrad (``ams_bound``) is on by default. ``adanorm`` and ``adam_debias`` as in
    the reference. Paper: "Positive-Negative Momentum: Manipulating Stochastic
    Gradient Noise to Improve Generalization", ICML 2021.
    """

    name = "adapnm"
    family = "adam"
    reference = "pytorch_optimizer.AdaPNM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999, 1.0),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        _betas3(self, betas)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound
        self.adanorm, self.adam_debias = adanorm, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["neg_exp_avg"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.beta3_1 = 1 + hp.beta3
        hp.noise_norm = mx.sqrt(mx.square(hp.beta3_1) + mx.square(hp.beta3))
        hp.odd = mx.remainder(hp.step, 2) == 1  # odd steps update exp_avg, even steps neg_exp_avg
        hp.beta1_sq = mx.square(hp.beta1)
        hp.c1, hp.c2 = 1 - hp.beta1_sq, hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        a, b = state["exp_avg"], state["neg_exp_avg"]
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        pos = hp.beta1_sq * mx.where(hp.odd, a, b) + hp.c1 * s_grad  # F.ema with beta1 ** 2
        a, b = mx.where(hp.odd, pos, a), mx.where(hp.odd, b, pos)
        state["exp_avg"], state["neg_exp_avg"] = a, b
        # the stale momentum read from the new state (odd steps: b, even steps: a, as from the old one), so that
        # every state output feeds the update and mx.compile fuses it into one kernel (mlx_optim.fusion)
        neg = mx.where(hp.odd, b, a)
        v = hp.beta2 * state["exp_avg_sq"] + hp.c2 * mx.square(g)
        state["exp_avg_sq"] = v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        pn_momentum = (hp.beta3_1 * pos - hp.beta3 * neg) / hp.noise_norm
        return p - hp.step_size * pn_momentum / (F.ams_bound_denom(v, hp.eps) / hp.bc2_sqrt)


@register
class PAdam(Optimizer):
    r"""Partially adaptive Adam (Chen & Gu, 2018): the denominator is raised to ``2 * partial``.

    .. math::
        p_t = p_{t-1} - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t}
              \frac{m_t}{(\sqrt{v_t}+\epsilon)^{2p}}

    ``partial`` :math:`p \in (0, 1/2]` interpolates between SGD with momentum and
    Adam (``partial=0.5``). L2 weight decay by default, as in the reference. Paper:
    "Closing the Generalization Gap of Adaptive Gradient Methods in Training Deep
    Neural Networks", 2018.
    """

    name = "padam"
    family = "adam"
    reference = "pytorch_optimizer.PAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        partial: Tunable = 0.25,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("partial", partial, 0.0, 1.0, "(]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.step_size = hp.lr * bc2_sqrt / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = hp.ema(state["exp_avg"], g, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / mx.power(mx.sqrt(v) + hp.eps, 2 * hp.partial)


@register
class Yogi(Optimizer):
    r"""Yogi (Zaheer et al., 2018): Adam with an additive, sign-controlled second moment.

    .. math::
        v_t = v_{t-1} - (1-\beta_2)\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    Both moments start at ``initial_accumulator``. ``adam_debias`` as in the
    reference. Paper: "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
    """

    name = "yogi"
    family = "adam"
    reference = "pytorch_optimizer.Yogi"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        betas: Sequence[float] = (0.9, 0.999),
        initial_accumulator: float = 1e-6,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-3,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("initial_accumulator", initial_accumulator)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.initial_accumulator = float(initial_accumulator)
        self.weight_decouple, self.fixed_decay, self.adam_debias = weight_decouple, fixed_decay, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.full(parameter, self.initial_accumulator)
        state["exp_avg_sq"] = self.full(parameter, self.initial_accumulator)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.c2 = hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        g2 = mx.square(g)
        m = hp.ema(state["exp_avg"], g, "beta1")
        v = state["exp_avg_sq"]
        # = v - (1 - beta2) sign(v - g2) g2 exactly (sign is -1, 0 or 1), two operations shallower, so that
        # mx.compile fuses the whole update into one kernel (mlx_optim.fusion)
        v = v - F.sign_diff(v, g2) * (hp.c2 * g2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)


def msvag_factor(m: mx.array, v: mx.array, rho: Any, one_minus_rho: Any = None) -> mx.array:
    """M-SVAG's variance-adapted factor ``m^2 / (m^2 + rho * s)`` with ``s = (v - m^2) / (1 - rho)``, in [0, 1].

    ``one_minus_rho``: ``1 - rho`` if the caller has it already (a per-step scalar)."""
    m2 = mx.square(m)
    s = (v - m2) / (1 - rho if one_minus_rho is None else one_minus_rho)
    factor = m2 / (s * rho + m2)
    # = clip(where(isnan(factor), 0, factor), 0, 1) bit for bit (NaN and factor <= 0 give +0), one operation
    # shallower, which leaves mx.compile room to fuse more of M-SVAG's update (mlx_optim.fusion)
    return mx.minimum(mx.where(factor > 0, factor, 0.0), 1.0)


@register
class MSVAG(Optimizer):
    r"""M-SVAG (Balles & Hennig, 2018): momentum SGD damped per coordinate by the gradient's relative variance.

    .. math::
        \hat m_t = \frac{m_t}{1-\beta^t},\quad \hat v_t = \frac{v_t}{1-\beta^t},\quad
        s_t = \frac{\hat v_t - \hat m_t^2}{1-\rho_t},\quad
        p_t = p_{t-1} - \eta\, \hat m_t \operatorname{clip}\!\Big(\frac{\hat m_t^2}{\hat m_t^2 + \rho_t s_t}, 0, 1\Big)

    with :math:`m_t, v_t` the EMAs (factor :math:`\beta`) of :math:`g_t` and
    :math:`g_t^2` and :math:`\rho_t = \min\big(\frac{(1-\beta^{2t})(1-\beta)^2}{(1-\beta^2)(1-\beta^t)^2}, 0.9999\big)`.
    Paper: "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic
    Gradients", ICML 2018. The Keras seed also lists ``epsilon`` and
    ``weight_decay``, which the reference (and this port) do not have.
    """

    name = "msvag"
    family = "adam"
    reference = "pytorch_optimizer.MSVAG"
    # p' <- factor <- s <- v <- v_ema is 11 operations deep to v_ema: mx.compile gives the new second moment
    # (a state output, written anyway) a kernel of its own, which the update's kernel reads back
    ops_per_leaf = 2

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        beta: Tunable = 0.9,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[]")

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc = hp.bias_correction("beta")  # 1 - beta^t and 1 - beta from the double-precision complement
        beta_power = 1 - hp.bc
        one_minus_beta_sq = hp.one_minus_beta * (1 + hp.beta)
        rho = (1 - mx.square(beta_power)) * mx.square(hp.one_minus_beta) / (one_minus_beta_sq * mx.square(hp.bc))
        hp.rho = mx.minimum(rho, 0.9999)
        hp.one_minus_rho = 1 - hp.rho

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m, v = hp.ema(state["exp_avg"], g, "beta"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        m, v = m / hp.bc, v / hp.bc
        # = p - (lr m) factor exactly (a product commutes); visiting the factor first lets mx.compile place m (and
        # its EMA) near the root, so the update takes two kernels, not four (mlx_optim.fusion)
        return p - msvag_factor(m, v, hp.rho, hp.one_minus_rho) * (hp.lr * m)
