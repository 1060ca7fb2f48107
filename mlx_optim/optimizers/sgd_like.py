"""SGD-like and sign-based optimizers from pytorch_optimizer.

SGDW, SGDP, AccSGD, AggMo, PID, QHM, LARS, PNM, Fromage, Nero, SRMM, TAM,
SignSGD and FOCUS, each parity-checked against its pytorch_optimizer 4.1.0 class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.optimizers.adam_a import adamp_projection
from mlx_optim.optimizers.adam_b import normalize_dim0
from mlx_optim.optimizers.sgd import momentum_buffer
from mlx_optim.registry import register

# ---------------------------------------------------------------------------- pure helpers


def neuron_norm(x: mx.array) -> mx.array:
    """Nero's per-neuron L2 norm: over all axes but the first (kept as size-1 axes); ``|x|`` for ndim <= 1."""
    if x.ndim <= 1:
        return mx.abs(x)
    return mx.sqrt(mx.sum(mx.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def neuron_center_normalize(p: mx.array, eps: Any) -> mx.array:
    """Nero's constraint: subtract each neuron's mean, then divide by its norm (+ ``eps``)."""
    p = p - mx.mean(p, axis=tuple(range(1, p.ndim)), keepdims=True)
    return p / (neuron_norm(p) + eps)


def lars_trust_ratio(p: mx.array, g: mx.array, trust_coefficient: Any, weight_decay: Any) -> mx.array:
    """LARS: ``tc * |p| / (|g| + wd |p|)``, 1 where ``|p|`` or the denominator is 0."""
    p_norm, g_norm = F.norm(p), F.norm(g)
    denom = g_norm + weight_decay * p_norm
    safe = mx.where(denom > 0, denom, 1.0)
    return mx.where((p_norm > 0) & (denom > 0), trust_coefficient * p_norm / safe, 1.0)


def _copy_state(opt: Optimizer, parameter: mx.array) -> mx.array:
    """A copy of ``parameter`` in the state dtype."""
    return parameter.astype(opt.state_dtype or opt.compute_dtype(parameter))


# ---------------------------------------------------------------------------- SGD variants


@register
class SGDW(Optimizer):
    r"""SGDW (Loshchilov & Hutter, 2019): SGD with momentum and *decoupled* weight decay.

    .. math::
        p \leftarrow p(1-\eta\lambda),\quad b_t = \mu b_{t-1} + (1-\tau) g_t\ (b_1 = g_1),\quad
        p_t = p - \eta\,(g_t + \mu b_t \text{ if nesterov else } b_t)

    ``weight_decouple=False`` folds an L2 penalty into the gradient instead. As in
    the reference the first momentum step copies the gradient (no dampening).
    Paper: "Decoupled Weight Decay Regularization", ICLR 2019. The Keras seed
    defaults ``learning_rate=1e-3`` and has a ``caution`` flag; the reference (and
    this port) default ``learning_rate=1e-4`` and have no ``caution``.
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


@register
class SGDP(Optimizer):
    r"""SGDP (Heo et al., 2021): SGD that removes the radial part of the update for scale-invariant weights.

    .. math::
        b_t = \mu b_{t-1} + (1-\tau) g_t,\quad d_t = g_t + \mu b_t \text{ if nesterov else } b_t,\\
        d_t \leftarrow d_t - \hat p\langle\hat p, d_t\rangle \text{ if } \max|\cos(g_t, p)| < \delta/\sqrt{d},\quad
        p_t = p\,\big(1 - \eta\lambda\,r/(1-\mu)\big) - \eta d_t

    The projection is tried per output channel, then per layer (tensors with more than
    one dimension only); a projected tensor uses the weight-decay ratio ``r = wd_ratio``.
    The momentum buffer starts at zero (no first-step copy), as in the reference. Paper:
    "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights",
    ICLR 2021. Reference quirk kept for parity: the L2 penalty (``weight_decouple=False``)
    is added to the gradient after the update was formed, so it has no effect.
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


@register
class AccSGD(Optimizer):
    r"""AccSGD (Kidambi et al., 2018): accelerated SGD coupling a short and a long step.

    With :math:`\beta = \xi c^2/\kappa`, :math:`\bar\eta = \eta\kappa/c` and :math:`\zeta = c/(c+\beta)`:

    .. math::
        b_t = \beta\big((1/\beta - 1) b_{t-1} - \bar\eta g_t + p_{t-1}\big),\quad
        p_t = \operatorname{lerp}(p_{t-1} - \eta g_t,\; b_t,\; 1-\zeta)

    The buffer starts at the initial parameters; ``weight_decay`` is an L2 penalty.
    Paper: "On the insufficiency of existing momentum schemes for Stochastic
    Optimization", ICLR 2018. The Keras seed calls ``constant`` ``smallConst``.
    """

    name = "accsgd"
    family = "sgd"
    reference = "pytorch_optimizer.AccSGD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        kappa: Tunable = 1000.0,
        xi: Tunable = 10.0,
        constant: Tunable = 0.7,
        weight_decay: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("kappa", kappa, 0.0)
        self._hyper("xi", xi, 0.0)
        self._hyper("constant", constant, None, 1.0)
        self._hyper("weight_decay", weight_decay, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = _copy_state(self, parameter)

    def step_scalars(self, hp) -> None:
        hp.large_lr = hp.lr * hp.kappa / hp.constant
        hp.beta = hp.xi * hp.constant**2 / hp.kappa  # 1 - alpha, computed without cancellation
        hp.zeta = hp.constant / (hp.constant + hp.beta)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        buf = hp.beta * ((1.0 / hp.beta - 1.0) * state["momentum_buffer"] - hp.large_lr * g + p)
        state["momentum_buffer"] = buf
        return F.lerp(p - hp.lr * g, buf, 1.0 - hp.zeta)


@register
class AggMo(Optimizer):
    r"""AggMo (Lucas et al., 2019): SGD averaging several momentum buffers with different decay rates.

    .. math:: b^{(i)}_t = \beta_i b^{(i)}_{t-1} + g_t,\quad p_t = p_{t-1} - \frac{\eta}{K}\sum_{i=1}^K b^{(i)}_t

    Any number of betas; buffer ``i`` is the state entry ``momentum_buffer_{i}``.
    Validation as in the reference (beta1, beta2 in [0, 1), beta3 in [0, 1], later
    ones unchecked). Paper: "Aggregated Momentum: Stability Through Passive Damping",
    ICLR 2019. The seed's ``AggMo.from_exp_form`` constructor is not provided.
    """

    name = "aggmo"
    family = "sgd"
    reference = "pytorch_optimizer.AggMo"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.0, 0.9, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) < 2:
            raise ValueError(f"AggMo: betas={betas!r} must have at least 2 values")
        for i, b in enumerate(betas):
            bounds = (0.0, 1.0, "[)") if i < 2 else (0.0, 1.0, "[]") if i == 2 else (None, None, "[]")
            self._hyper(f"beta{i + 1}", b, *bounds)
        self.n_betas = len(betas)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        for i in range(self.n_betas):
            state[f"momentum_buffer_{i}"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        step_size = hp.lr / self.n_betas
        for i in range(self.n_betas):
            buf = getattr(hp, f"beta{i + 1}") * state[f"momentum_buffer_{i}"] + g
            state[f"momentum_buffer_{i}"] = buf
            p = p - step_size * buf
        return p


@register
class PID(Optimizer):
    r"""PID controller optimizer (An et al., 2018): SGD plus integral and derivative terms.

    With momentum :math:`\mu > 0`:

    .. math::
        I_t = \mu I_{t-1} + (1-\tau) g_t,\quad D_t = \mu D_{t-1} + (1-\mu)(g_t - g_{t-1})\ (D_1 = 0),\\
        p_t = p_{t-1} - \eta\,(g_t + K_I I_t + K_D D_t)

    With ``momentum=0`` (the default) it is plain SGD, as in the reference. Paper:
    "A PID Controller Approach for Stochastic Optimization of Deep Networks", CVPR 2018.
    The Keras seed has a ``nesterov`` flag and no default ``learning_rate``; the
    reference has neither (its default is 1e-3).
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


@register
class QHM(Optimizer):
    r"""QHM (Ma & Yarats, 2019): quasi-hyperbolic momentum, a blend of the gradient and its average.

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad p_t = p_{t-1} - \eta\,\big(\nu b_t + (1-\nu) g_t\big)

    Paper: "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019. The Keras
    seed defaults ``nu=0.7`` and has ``weight_decay_type``; the reference (and this
    port) default ``nu=1.0`` and choose the decay with ``weight_decouple``/``fixed_decay``.
    """

    name = "qhm"
    family = "sgd"
    reference = "pytorch_optimizer.QHM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.0,
        nu: Tunable = 1.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("nu", nu, 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        buf = F.lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        return p - hp.lr * hp.nu * buf - hp.lr * hp.one_minus_nu * g


@register
class LARS(Optimizer):
    r"""LARS (You et al., 2017): SGD with a layer-wise trust ratio.

    For tensors with more than one dimension:

    .. math::
        r = \frac{c\,\lVert p\rVert}{\lVert g\rVert + \lambda\lVert p\rVert},\quad
        g \leftarrow r\,(g + \lambda p),\qquad
        b_t = \mu b_{t-1} + (1-\tau) g,\quad p_t = p - \eta\,(g + \mu b_t \text{ if nesterov else } b_t)

    (:math:`r = 1` where a norm is zero). Scalars and vectors take plain (momentum) SGD
    steps without weight decay. The buffer starts at zero, as in the reference. Paper:
    "Large Batch Training of Convolutional Networks", 2017. The Keras seed follows timm
    (``learning_rate=1.0``, ``momentum=0``, ``trust_clip``, ``always_adapt``, ``epsilon``);
    the reference defaults ``learning_rate=1e-3``, ``momentum=0.9`` and has none of those.
    """

    name = "lars"
    family = "sgd"
    # two norms (Square + Sum + Squeeze, Sqrt each), wd * |p|, the step. Measured: norm_kd (5 ops) is ~8% slower on
    # the LoRA tree (the trust-ratio math then runs per element), so the norms stay scalar
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


@register
class PNM(Optimizer):
    r"""PNM (Xie et al., 2021): positive-negative momentum, two buffers that swap roles every step.

    On odd steps buffer A is the positive momentum :math:`m^+` and B the negative one
    :math:`m^-`; on even steps they swap. With the current :math:`m^+`:

    .. math::
        m^+_t = \beta_1^2 m^+ + (1-\beta_1^2) g_t,\quad
        p_t = p_{t-1} - \frac{\eta}{\sqrt{(1+\beta_2)^2+\beta_2^2}}\big((1+\beta_2) m^+_t - \beta_2 m^-\big)

    Paper: "Positive-Negative Momentum: Manipulating Stochastic Gradient Noise to
    Improve Generalization", ICML 2021. ``eps`` is validated but unused, as in the reference.
    """

    name = "pnm"
    family = "sgd"
    reference = "pytorch_optimizer.PNM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 1.0),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: float = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2, interval="[]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._check("eps", eps, 0.0)
        self.eps = eps

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["pos_momentum"] = self.zeros(parameter)
        state["neg_momentum"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.odd = mx.remainder(hp.step, 2.0) == 1.0
        hp.noise_norm = mx.sqrt((1.0 + hp.beta2) ** 2 + hp.beta2**2)
        hp.inv_noise_norm = 1.0 / hp.noise_norm
        hp.pos_weight, hp.neg_weight = 1.0 + hp.beta2, -hp.beta2
        hp.lerp_weight = 1.0 - hp.beta1**2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        a, b = state["pos_momentum"], state["neg_momentum"]
        pos = F.lerp(mx.where(hp.odd, a, b), g, hp.lerp_weight)
        a, b = mx.where(hp.odd, pos, a), mx.where(hp.odd, b, pos)
        state["pos_momentum"], state["neg_momentum"] = a, b
        # For one kernel per leaf (mlx_optim.fusion): the negative momentum is read from the new buffers (the
        # untouched one), so the update consumes both state outputs; and -b2 neg + (1 + b2) pos, exactly
        # (1 + b2) pos - b2 neg, makes mx.compile reach pos last through its shallowest use
        neg = mx.where(hp.odd, b, a)
        delta = (hp.neg_weight * neg + hp.pos_weight * pos) * hp.inv_noise_norm
        return p - hp.lr * delta


# ---------------------------------------------------------------------------- norm-scaled methods


@register
class Fromage(Optimizer):
    r"""Fromage (Bernstein et al., 2020): gradient steps of relative size :math:`\eta`, then a shrink.

    .. math::
        p \leftarrow \frac{p - \eta \frac{\lVert p\rVert}{\lVert g\rVert} g}{\sqrt{1+\eta^2}}

    (the ratio is 1 where a norm is zero). With ``p_bound`` each tensor's norm is kept
    below ``p_bound`` times its initial norm (state ``max``). Paper: "On the distance
    between two neural networks and the stability of learning", NeurIPS 2020.
    """

    name = "fromage"
    family = "sgd"
    reference = "pytorch_optimizer.Fromage"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        p_bound: float | None = None,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        if p_bound is not None:
            self._check("p_bound", p_bound)
        self.p_bound = p_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.p_bound is not None:
            state["max"] = F.norm(parameter) * self.p_bound

    def step_scalars(self, hp) -> None:
        hp.pre_factor = mx.sqrt(1.0 + hp.lr**2)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p_norm, g_norm = F.norm(p), F.norm(g)
        rescale = (p_norm > 0) & (g_norm > 0)
        ratio = mx.where(rescale, p_norm, 1.0) / mx.where(rescale, g_norm, 1.0)
        p = (p - hp.lr * (g * ratio)) / hp.pre_factor
        if self.p_bound is not None:
            norm, bound = F.norm(p), state["max"]
            p = mx.where(norm > bound, p * bound / norm, p)
        return p


@register
class Nero(Optimizer):
    r"""Nero (Liu et al., 2021): neuron-wise normalized steps on centered, unit-norm neurons.

    With the per-neuron gradient norm :math:`n_t = \lVert g_t\rVert` (per row; :math:`|g_t|` for
    scalars and vectors):

    .. math::
        v_t = \beta v_{t-1} + (1-\beta) n_t^2,\quad
        p_t = \Pi\Big(p_{t-1} - \eta\,s\,\frac{g_t}{\sqrt{v_t/(1-\beta^t)}+\epsilon}\Big)

    where :math:`\Pi` (``constraints=True``, tensors with more than one dimension) centers
    each neuron and scales it to unit norm, and :math:`s` is the mean neuron norm of the
    initial (projected) parameter, 0.01 if that is 0. As in the reference the projection is
    also applied to the parameter before the first step, and NaNs of the normalized
    gradient become 0. Paper: "Learning by Turning: Neural Architecture Aware
    Optimisation", ICML 2021.
    """

    name = "nero"
    family = "sgd"
    reference = "pytorch_optimizer.Nero"

    def __init__(
        self,
        learning_rate: Tunable = 0.01,
        beta: Tunable = 0.999,
        constraints: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0)
        self._hyper("eps", eps, 0.0)
        self.constraints = constraints

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg_sq"] = self.zeros(parameter, neuron_norm(parameter).shape)
        state["scale"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        hp.bc = F.bias_correction(hp.beta, hp.step)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        constrain = self.constraints and p.ndim > 1
        if constrain:
            p = mx.where(hp.first, neuron_center_normalize(p, hp.eps), p)
        scale0 = mx.mean(neuron_norm(p)).astype(mx.float32)
        scale = mx.where(hp.first, mx.where(scale0 == 0, 0.01, scale0), state["scale"])
        state["scale"] = scale
        n = neuron_norm(g)
        v = hp.beta * state["exp_avg_sq"] + (1.0 - hp.beta) * n * n
        state["exp_avg_sq"] = v
        g_normed = mx.nan_to_num(g / (mx.sqrt(v / hp.bc) + hp.eps), nan=0.0)
        p = p - hp.lr * scale * g_normed
        return neuron_center_normalize(p, hp.eps) if constrain else p


@register
class SRMM(Optimizer):
    r"""SRMM (Yang et al., 2022): stochastic regularized majorization-minimization.

    With :math:`w_t = ((t \bmod L) + 1)^{-\beta}` (:math:`w_t = 1` without a memory length :math:`L`):

    .. math::
        \bar g_t = (1-w_t)\bar g_{t-1} + w_t g_t,\quad
        \bar p_t = (1-w_t)\bar p_{t-1} + w_t p_{t-1} - \eta \bar g_t,\quad p_t = \bar p_t

    Paper: "Stochastic regularized majorization-minimization with weakly convex and
    multi-convex surrogates", 2022. ``memory_length`` must be None or at least 1 (the reference
    fails later with a ZeroDivisionError on 0).
    """

    name = "srmm"
    family = "sgd"
    reference = "pytorch_optimizer.SRMM"

    def __init__(
        self,
        learning_rate: Tunable = 0.01,
        beta: Tunable = 0.5,
        memory_length: int | None = 100,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0)
        if memory_length is not None:
            self._check("memory_length", memory_length, 1)
        self.memory_length = memory_length

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["mov_avg_grad"] = self.zeros(parameter)
        state["mov_avg_param"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        length = float(self.memory_length) if self.memory_length is not None else 1.0
        hp.w = mx.power(mx.remainder(hp.step, length) + 1.0, -hp.beta)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g_avg = F.lerp(state["mov_avg_grad"], g, hp.w)
        p_avg = F.lerp(state["mov_avg_param"], p, hp.w) - hp.lr * g_avg
        state["mov_avg_grad"], state["mov_avg_param"] = g_avg, p_avg
        return p_avg


@register
class TAM(Optimizer):
    r"""TAM: SGD momentum whose gradient weight follows the gradient-momentum alignment.

    With :math:`\mathrm{n}(x)` the L2 normalization along the first axis and :math:`b_0 = g_1`:

    .. math::
        s_t = \rho s_{t-1} + (1-\rho)\,\mathrm{n}(b_{t-1})\odot\mathrm{n}(g_t),\quad
        b_t = \mu b_{t-1} + \Big(\frac{1+s_t}{2}+\epsilon\Big) g_t,\quad p_t = p_{t-1} - \eta b_t

    Paper: "Torque-Aware Momentum", 2024. Reference quirk kept for parity: the L2 penalty
    (``weight_decouple=False``) is added to the gradient after the buffer was updated, so
    it has no effect. The Keras seed's ``name`` default ("soap") is a copy-paste error.
    """

    name = "tam"
    family = "sgd"
    reference = "pytorch_optimizer.TAM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.9,
        decay_rate: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("decay_rate", decay_rate, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.zeros(parameter)
        state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        buf = mx.where(hp.step == 1, g, state["momentum_buffer"])  # the reference starts the buffer at g_1
        s = F.lerp(state["s"], normalize_dim0(buf) * normalize_dim0(g), hp.one_minus_decay_rate)
        buf = hp.momentum * buf + ((1.0 + s) / 2.0 + hp.eps) * g
        state["s"], state["momentum_buffer"] = s, buf
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p - hp.lr * buf


# ---------------------------------------------------------------------------- sign-based


@register
class SignSGD(Optimizer):
    r"""signSGD / Signum (Bernstein et al., 2018): step along the sign of the (averaged) gradient.

    .. math:: m_t = \mu m_{t-1} + (1-\mu) g_t,\quad p_t = p_{t-1} - \eta \operatorname{sign}(m_t)

    ``momentum=0`` gives signSGD (the sign of the gradient itself). Decoupled weight decay
    by default. Paper: "signSGD: Compressed Optimisation for Non-Convex Problems", ICML 2018.
    """

    name = "signsgd"
    family = "sign"
    reference = "pytorch_optimizer.SignSGD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self.weight_decouple = weight_decouple
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        if self.use_momentum:
            g = F.lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
            state["momentum_buffer"] = g
        return p - hp.lr * F.sign(g)


@register
class FOCUS(Optimizer):
    r"""FOCUS: sign momentum plus a sign attraction toward the running parameter average.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        \bar p_t = \beta_2 \bar p_{t-1} + (1-\beta_2) p_{t-1},\quad \hat p_t = \bar p_t/(1-\beta_2^t),\\
        p' = p_{t-1} - \eta\lambda\hat p_t,\quad
        p_t = p' - \eta\big(\gamma\operatorname{sign}(p' - \hat p_t) + \operatorname{sign}(m_t)\big)

    As in the reference, weight decay subtracts :math:`\eta\lambda\hat p_t` (the running average, not :math:`p`).
    Paper: "FOCUS: First Order Concentrated Updating Scheme", 2025.
    """

    name = "focus"
    family = "sign"
    reference = "pytorch_optimizer.FOCUS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        betas: Sequence[float] = (0.9, 0.999),
        gamma: Tunable = 0.1,
        weight_decay: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("gamma", gamma, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["pbar"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc2 = hp.bias_correction("beta2")
        hp.lr_wd = hp.lr * hp.weight_decay

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        pbar = F.lerp(state["pbar"], p, hp.one_minus_beta2)
        state["exp_avg"], state["pbar"] = m, pbar
        pbar_hat = pbar / hp.bc2
        if self.decays():
            p = p - hp.lr_wd * pbar_hat
        # sign_diff(p, pbar_hat) == sign(p - pbar_hat), one operation shallower: one kernel (mlx_optim.fusion)
        return p - hp.lr * (hp.gamma * F.sign_diff(p, pbar_hat) + F.sign(m))
