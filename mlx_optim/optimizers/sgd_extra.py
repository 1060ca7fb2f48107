"""More SGD-like optimizers: Adai / AdaiV2, A2Grad, ASGD (adaptive), AveragedSGD (torch ASGD), SGDSaI, VSGD,
RACS and Gravity."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.optimizers.sgd_like import _copy_state
from mlx_optim.registry import register

# ---------------------------------------------------------------------------- Adai


def adai_momentum(v_hat: mx.array, v_mean, beta0, dampening, eps) -> tuple[mx.array, mx.array]:
    r"""Adai's adaptive inertia: ``beta1 = clip(1 - beta0 (v_hat / mean(v_hat))^{1/(3-2d)}, 0, 1-eps)``
    and the gradient weight ``beta3 = (1 - beta1)^d``."""
    beta1 = mx.clip(1 - beta0 * mx.power(v_hat / v_mean, 1 / (3 - 2 * dampening)), 0.0, 1 - eps)
    return beta1, mx.power(1 - beta1, dampening)


@register
class Adai(Optimizer):
    r"""Adai, adaptive inertia (Xie et al., 2022), pytorch_optimizer semantics.

    The momentum of every coordinate adapts to its second moment relative to the
    mean second moment over *all* parameters (a global reduction done in
    :meth:`prepare`):

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad \hat v_t = v_t / (1-\beta_2^t),\quad
        \bar v_t = \max(\operatorname{mean}(\hat v_t), \epsilon) \\
        \beta_{1,t} = \operatorname{clip}\big(1 - \beta_0 (\hat v_t/\bar v_t)^{1/(3-2d)}, 0, 1-\epsilon\big),\quad
        m_t = \beta_{1,t} m_{t-1} + (1-\beta_{1,t})^{d} g_t \\
        p_t = p_{t-1} - \eta\, \beta_0^{1-d}\, \frac{m_t}{1 - \prod_{i\le t} \beta_{1,i}}

    with ``betas = (beta0, beta2)`` and ``dampening`` :math:`d` (1 = the paper's
    Adai). Weight decay is L2 (``weight_decouple`` / ``fixed_decay`` for decoupled),
    applied before the second moment, or, with ``stable_weight_decay``, after it
    (then an L2 term reaches only :math:`m_t`). ``use_gc`` centralizes gradients.
    Paper: "Adaptive Inertia: Disentangling the Effects of Adaptive Learning Rate
    and Momentum", ICML 2022. The Keras seed's ``beta0``/``beta2``/``epsilon``/
    ``decoupled`` are ``betas``/``eps``/``weight_decouple`` here; it gives no default
    learning rate (the reference's 1e-3 is used) and its Adai has no ``dampening``.
    """

    name = "adai"
    family = "sgd"
    reference = "pytorch_optimizer.Adai"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.1, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        stable_weight_decay: bool = False,
        dampening: Tunable = 1.0,
        eps: Tunable = 1e-3,
        maximize: bool = False,
        *,
        use_gc: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("dampening", dampening)
        self._hyper("eps", eps, 0.0)
        self.stable_weight_decay, self.use_gc = stable_weight_decay, use_gc

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["beta1_prod"] = self.full(parameter, 1.0)

    def step_scalars(self, hp) -> None:
        hp.bc2 = hp.bias_correction("beta2")

    def _decay(self, g: mx.array, p: mx.array) -> tuple[mx.array, mx.array]:
        return self.decay_weights(p, g)

    def _pre(self, g: mx.array, p: mx.array) -> tuple[mx.array, mx.array]:
        """Gradient centralization and the (non-stable) weight decay; returns ``(p, g)``."""
        if self.use_gc:
            g = self.apply_gc(g)
        if not self.stable_weight_decay:
            p, g = self._decay(g, p)
        return p, g

    def prepare(self, gradients, parameters) -> None:
        hp, total, size = self.hp, mx.array(0.0, mx.float32), 0
        for path, g, p, state in leaves(gradients, parameters, self.state):
            self._leaf_path = path
            dtype = self.compute_dtype(p)
            g = g.astype(dtype)
            _, g = self._pre(-g if self.maximize else g, p.astype(dtype))
            v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
            state["exp_avg_sq"] = v
            total = total + mx.sum(v).astype(mx.float32) / hp.bc2
            size += v.size
        hp.v_mean = mx.maximum(total / max(size, 1), hp.eps)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self._pre(g, p)  # the second moment was updated in prepare()
        if self.stable_weight_decay:
            p, g = self._decay(g, p)
        beta1, beta3 = adai_momentum(state["exp_avg_sq"] / hp.bc2, hp.v_mean, hp.beta1, hp.dampening, hp.eps)
        prod = state["beta1_prod"] * beta1
        m = beta1 * state["exp_avg"] + beta3 * g
        state["beta1_prod"], state["exp_avg"] = prod, m
        return p - hp.lr * mx.power(hp.beta1, hp.one_minus_dampening) * m / (1 - prod)


@register
class AdaiV2(Adai):
    r"""AdaiV2: the Keras seed's generalized Adai whose ``dampening`` :math:`d` sets the
    nonlinearity of the adaptive inertia, :math:`\beta_1 = 1 - \beta_0 (\hat v/\bar v)^{1/(3-2d)}`,
    and the gradient weight :math:`(1-\beta_1)^d`.

    pytorch_optimizer's :class:`Adai` already has this ``dampening`` option, so this
    is :class:`Adai` with the same keywords and defaults (``dampening=1.0``, where it
    reduces to the paper's Adai), registered under the seed's name and checked
    against ``pytorch_optimizer.Adai``. Seed names: ``beta0``/``beta2`` are
    ``betas``, ``epsilon`` is ``eps``, ``decoupled`` is ``weight_decouple``; the seed
    gives no default learning rate (1e-3 here, as the reference).
    """

    name = "adaiv2"
    reference = "pytorch_optimizer.Adai"


# ---------------------------------------------------------------------------- A2Grad


@register
class A2Grad(Optimizer):
    r"""A2Grad, adaptive accelerated SGD (Deng et al., 2018), pytorch_optimizer semantics.

    With :math:`\gamma_t = 2L/(t+1)`, :math:`\alpha_t = 2/(t+2)` (:math:`\alpha_0 = 1`) and
    :math:`\bar g_t` the running mean of the gradients:

    .. math::
        v_t = v_{t-1} + \lVert g_t - \bar g_t \rVert^2 \ (\text{uni}),\quad
        h_t = \sqrt{v_t}\ (\times \sqrt{t+1} \text{ for inc/exp}),\quad
        c_t = -1/(\gamma_t + \beta h_t) \\
        x_t = x_{t-1} + c_t g_t,\quad
        p_t = (1-\alpha_{t}) p_{t-1} + \alpha_{t} x_t + (1-\alpha_{t}) \alpha_{t-1} c_t g_t

    ``variant='inc'`` scales :math:`v` by :math:`(t/(t+1))^2` before adding;
    ``'exp'`` keeps :math:`\tilde v_t = \rho \tilde v_{t-1} + (1-\rho)\lVert g_t - \bar g_t\rVert^2`
    and :math:`v_t = \max(v_{t-1}, \tilde v_t)`. :math:`v` is one scalar per tensor.
    There is no learning rate: ``learning_rate`` (default ``None``) is accepted and
    validated like the reference and otherwise unused. Paper: "Uniform Convergence
    of Adaptive Accelerated Gradient", arXiv:1810.00553. Same defaults as the Keras seed.
    """

    name = "a2grad"
    family = "sgd"
    reference = "pytorch_optimizer.A2Grad"

    def __init__(
        self,
        learning_rate: Tunable | None = None,
        beta: Tunable = 10.0,
        lips: Tunable = 10.0,
        rho: Tunable = 0.5,
        variant: str = "uni",
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(0.0 if learning_rate is None else learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta)
        self._hyper("lips", lips, 0.0, None, "(]")
        self._hyper("rho", rho, 0.0)
        self._choice("variant", variant, ("uni", "inc", "exp"))
        self.variant = variant

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["avg_grad"] = self.zeros(parameter)  # the first step overwrites it with g_1
        state["x_k"] = _copy_state(self, parameter)
        state["v_k"] = self.zeros(parameter, shape=())
        if self.variant == "exp":
            state["v_kk"] = self.zeros(parameter, shape=())

    def step_scalars(self, hp) -> None:
        t = hp.step
        hp.gamma_k = 2.0 * hp.lips / (t + 1)
        hp.alpha_next = 2.0 / (t + 3)
        hp.alpha_k = mx.where(t == 1, 1.0, 2.0 / (t + 2))  # the previous step's alpha_next
        hp.inc_factor = mx.square(t / (t + 1))
        hp.h_scale = mx.sqrt(t + 1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        avg = F.lerp(state["avg_grad"], g, 1.0 / hp.step)
        delta_sq = mx.sum(mx.square(g - avg))
        v = state["v_k"]
        if self.variant == "exp":
            v_kk = F.lerp(state["v_kk"], delta_sq, hp.one_minus_rho)
            state["v_kk"] = v_kk
            v = mx.maximum(v, v_kk)
        else:
            v = (v * hp.inc_factor if self.variant == "inc" else v) + delta_sq
        h = mx.sqrt(v) if self.variant == "uni" else mx.sqrt(v) * hp.h_scale
        coef = -1.0 / (hp.gamma_k + hp.beta * h)
        x = state["x_k"] + coef * g
        state["avg_grad"], state["v_k"], state["x_k"] = avg, v, x
        p = F.lerp(p, x, hp.alpha_next)
        return p + ((1 - hp.alpha_next) * hp.alpha_k * coef) * g


# ---------------------------------------------------------------------------- ASGD (adaptive) and AveragedSGD


def _global_norm(xs) -> mx.array:
    # keepdims: each leaf's sum stays (1, ..., 1), summed (broadcast) and reshaped to () once, the same sums
    # without a Squeeze per leaf (mlx_optim.fusion)
    total = sum((mx.sum(mx.square(x.astype(mx.float32)), keepdims=True) for x in xs), mx.array(0.0, mx.float32))
    return mx.sqrt(total).reshape(())


@register
class ASGD(Optimizer):
    r"""Adaptive SGD without descent (Malitsky & Mishchenko, 2020), pytorch_optimizer's ``ASGD``.

    The learning rate is adapted every step from the change of the global
    parameter norm and gradient norm (differences of *norms*, as in the
    reference), then a plain SGD step is taken:

    .. math::
        \eta_t = \eta_{t-1}\sqrt{1 + a\,\theta_{t-1}},\quad
        \eta_t \leftarrow \min\!\Big(\eta_t, \frac{\Delta\lVert p\rVert}{d\,\Delta\lVert g\rVert}\Big) + \epsilon
        \ \text{ if both differences are } > 0,\quad
        \theta_t = \eta_t / \eta_{t-1},\quad p_t = p_{t-1} - \eta_t g_t

    with ``amplifier`` :math:`a` and ``dampening`` :math:`d`. ``learning_rate`` is the
    initial :math:`\eta_0` (read on the first step; the adapted value lives in
    ``state["current_lr"]``). Weight decay is decoupled by default and uses
    :math:`\eta_t`. Paper: "Adaptive Gradient Descent without Descent", ICML 2020.
    Not ``torch.optim.ASGD`` (averaged SGD): that one is :class:`AveragedSGD`.
    Same defaults as the Keras seed's ASGD.
    """

    name = "asgd"
    family = "sgd"
    reference = "pytorch_optimizer.ASGD"
    # the update is one kernel; the global norms of p and g are reductions (Square and Sum each, not fusable) and
    # the chains summing the leaves' norms (per-step scalars) change kernels with the number of leaves
    ops_per_leaf = 7

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        amplifier: Tunable = 0.02,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        theta: float = 1.0,
        dampening: Tunable = 1.0,
        eps: Tunable = 1e-5,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("amplifier", amplifier, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._check("theta", theta)
        self._hyper("dampening", dampening)
        self._hyper("eps", eps, 0.0)
        self.state["theta"] = mx.array(float(theta), mx.float32)
        self.state["current_lr"] = mx.array(0.0, mx.float32)
        self.state["prev_param_norm"] = mx.array(0.0, mx.float32)
        self.state["prev_grad_norm"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        pass

    def prepare(self, gradients, parameters) -> None:
        hp, s = self.hp, self.state
        items = leaves(gradients, parameters, s)
        p_norm = _global_norm(p for _, _, p, _ in items)
        g_norm = _global_norm(g for _, g, _, _ in items)
        first = hp.step == 1
        lr = mx.where(first, hp.lr, s["current_lr"])
        param_diff = p_norm - mx.where(first, p_norm, s["prev_param_norm"])
        grad_diff = g_norm - mx.where(first, g_norm, s["prev_grad_norm"])
        new_lr = lr * mx.sqrt(1 + hp.amplifier * s["theta"])
        bound = param_diff / (hp.dampening * mx.where(grad_diff > 0, grad_diff, 1.0))
        new_lr = mx.where((param_diff > 0) & (grad_diff > 0), mx.minimum(new_lr, bound) + hp.eps, new_lr)
        s["theta"], s["current_lr"] = new_lr / lr, new_lr
        s["prev_param_norm"], s["prev_grad_norm"] = p_norm, g_norm
        hp.asgd_lr = new_lr

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        lr = self.hp.asgd_lr
        p, g = self.decay_weights(p, g, lr=lr)
        return p - lr * g


@register
class AveragedSGD(Optimizer):
    r"""Averaged SGD (Polyak & Juditsky, 1992), ``torch.optim.ASGD`` semantics.

    SGD with a decaying step and a weight shrink; the running average of the
    iterates, started at step ``t0``, is kept in ``state[...]["ax"]`` (the
    model holds the SGD iterate, as in PyTorch):

    .. math::
        p_t = p_{t-1}(1 - \lambda \eta_t) - \eta_t (g_t + w p_{t-1}),\quad
        \eta_t = \frac{\eta}{(1 + \lambda \eta (t-1))^{\alpha}} \\
        \bar x_t = \bar x_{t-1} + \mu_t (p_t - \bar x_{t-1}),\quad \mu_t = 1/\max(1, t - 1 - t_0)

    Registered as ``averagedsgd`` because pytorch_optimizer's ``asgd`` is the
    adaptive :class:`ASGD`. Not in the Keras seed (its ASGD is the adaptive one).
    """

    name = "averagedsgd"
    family = "sgd"
    reference = "torch.optim.ASGD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        lambd: Tunable = 1e-4,
        alpha: Tunable = 0.75,
        t0: Tunable = 1e6,
        weight_decay: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lambd", lambd)
        self._hyper("alpha", alpha)
        self._hyper("t0", t0)
        self._hyper("weight_decay", weight_decay, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["ax"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        prev = hp.step - 1  # torch computes eta and mu at the end of the previous step
        hp.eta = hp.lr / mx.power(1 + hp.lambd * hp.lr * prev, hp.alpha)
        hp.mu = 1.0 / mx.maximum(1.0, prev - hp.t0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        p = p * (1 - hp.lambd * hp.eta) - hp.eta * g
        ax = state["ax"]
        state["ax"] = mx.where(hp.mu == 1, p, ax + (p - ax) * hp.mu)
        return p


# ---------------------------------------------------------------------------- SGDSaI


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
    r"""SGD-SaI, SGD with scaling at initialization (Xu et al., 2024), pytorch_optimizer semantics.

    Each tensor's learning rate is scaled once, by the gradient signal-to-noise
    ratio of its *first* gradient (:func:`gsnr`), then plain momentum SGD:

    .. math::
        s = \lVert g_1\rVert / (\operatorname{std}(g_1) + \epsilon),\quad
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad p_t = p_{t-1}(1-\eta\lambda) - \eta\, s\, b_t

    Weight decay is decoupled by default. Reference quirk kept: with
    ``weight_decouple=False`` and momentum > 0 the L2 term is added to the gradient
    *after* the momentum update and so has no effect. Paper: "No More Adam:
    Learning Rate Scaling at Initialization is All You Need", arXiv:2412.11768.
    Same defaults as the Keras seed.
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


# ---------------------------------------------------------------------------- VSGD


@register
class VSGD(Optimizer):
    r"""VSGD, variational stochastic gradient descent (Chen et al., 2024), pytorch_optimizer semantics.

    The true gradient :math:`\mu_g` is estimated by a Bayesian filter from the
    noisy gradient, with gamma-distributed precisions whose rate parameters
    :math:`b_g, \hat b_g` are averaged with weights :math:`\rho_{1,2} = t^{-\tau_{1,2}}`:

    .. math::
        \sigma_g = b_g / a,\ \hat\sigma_g = \hat b_g / a,\quad
        \mu_t = \frac{\hat\sigma_g \mu_{t-1} + \sigma_g g_t}{\sigma_g + \hat\sigma_g},\quad
        m_t = \mu_t^2 + \frac{\sigma_g \hat\sigma_g}{\sigma_g + \hat\sigma_g} \\
        b_g \leftarrow \operatorname{lerp}(b_g, b_0 + m_t - 2\mu_t\mu_{t-1} + \mu_{t-1}^2, \rho_1),\quad
        \hat b_g \leftarrow \operatorname{lerp}(\hat b_g, \hat b_0 + m_t - 2 g_t \mu_t + g_t^2, \rho_2) \\
        p_t = p_{t-1} - \eta\, \mu_t / (\sqrt{m_t} + \epsilon)

    with prior :math:`a = 2 p_s + 1 + 10^{-4}`, :math:`b_0 = 2 p_s`,
    :math:`\hat b_0 = 2\,\text{ghattg}\, p_s` (first step: :math:`\sigma = b_0/(a-1)`).
    Weight decay is decoupled by default. Paper: "Variational Stochastic Gradient
    Descent for Deep Neural Networks", ICML 2024. Same defaults as the Keras seed.
    """

    name = "vsgd"
    family = "sgd"
    reference = "pytorch_optimizer.VSGD"
    # p', bg' and bhg' are three outputs none of which reads another, and each reads mu and mu^2 + sigma: mx.compile
    # gives those five a kernel each
    ops_per_leaf = 5

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        ghattg: Tunable = 30.0,
        ps: Tunable = 1e-8,
        tau1: Tunable = 0.81,
        tau2: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        for name, value in (("ghattg", ghattg), ("ps", ps), ("tau1", tau1), ("tau2", tau2)):
            self._hyper(name, value, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple

    def init_single(self, parameter: mx.array, state: dict) -> None:
        dtype = self.state_dtype or self.compute_dtype(parameter)
        ps = self.state["ps"]
        state["mug"] = self.zeros(parameter)
        state["bg"] = mx.full(parameter.shape, 2.0 * ps, dtype=dtype)
        state["bhg"] = mx.full(parameter.shape, 2.0 * self.state["ghattg"] * ps, dtype=dtype)

    def step_scalars(self, hp) -> None:
        hp.pa2 = 2.0 * hp.ps + 1.0 + 1e-4
        hp.pbg2 = 2.0 * hp.ps
        hp.pbhg2 = 2.0 * hp.ghattg * hp.ps
        hp.rho1 = mx.power(hp.step, -hp.tau1)
        hp.rho2 = mx.power(hp.step, -hp.tau2)
        hp.first = hp.step == 1
        hp.sg1 = hp.pbg2 / (hp.pa2 - 1.0)  # the first step's sigma_g and sigma_hat_g
        hp.shg1 = hp.pbhg2 / (hp.pa2 - 1.0)
        hp.var1 = hp.sg1 * hp.shg1 / (hp.sg1 + hp.shg1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        bg, bhg = state["bg"], state["bhg"]
        sg = mx.where(hp.first, hp.sg1, bg / hp.pa2)
        shg = mx.where(hp.first, hp.shg1, bhg / hp.pa2)
        mug_prev = state["mug"]
        mug = (mug_prev * shg + g * sg) / (sg + shg)
        # sg shg / (sg + shg) from bg, bhg directly (= bg bhg / (pa2 (bg + bhg)) up to rounding): sg, shg and their
        # sum then feed only the kernel of mug instead of being written out for a second kernel (mlx_optim.fusion)
        if bg.dtype != g.dtype:
            bg, bhg = bg.astype(g.dtype), bhg.astype(g.dtype)
        var = mx.where(hp.first, hp.var1, bg * bhg / (hp.pa2 * (bg + bhg)))
        mug_sq = mx.square(mug) + var
        bg2 = hp.pbg2 + mug_sq - 2.0 * mug * mug_prev + mx.square(mug_prev)
        bhg2 = hp.pbhg2 + mug_sq - 2.0 * g * mug + mx.square(g)
        state["mug"] = mug
        state["bg"] = F.lerp(state["bg"], bg2, hp.rho1)
        state["bhg"] = F.lerp(state["bhg"], bhg2, hp.rho2)
        return p - hp.lr / (mx.sqrt(mug_sq) + hp.eps) * mug


# ---------------------------------------------------------------------------- RACS


def racs_shape(shape: Sequence[int]) -> tuple[int, int]:
    """The matrix view RACS scales: ``(numel, 1)`` below 2-D, ``(shape[0], rest)`` above."""
    if len(shape) < 2:
        return math.prod(shape), 1
    return shape[0], math.prod(shape[1:])


@register
class RACS(Optimizer):
    r"""RACS, row and column scaled SGD (Gong et al., 2025), pytorch_optimizer semantics.

    Every tensor is viewed as a matrix :math:`G` (:func:`racs_shape`); running
    row and column means of :math:`G^2` scale it, and the growth of the scaled
    update's norm is limited by ``gamma``:

    .. math::
        s_t = \beta s_{t-1} + (1-\beta)\operatorname{mean}_{cols}(G^2),\quad
        q_t = \beta q_{t-1} + (1-\beta)\operatorname{mean}_{rows}(G^2),\quad
        \hat G = \frac{G}{\sqrt{s_t+\epsilon}\,\sqrt{q_t+\epsilon}^\top} \\
        \tau_t = \frac{\gamma}{\max(\lVert\hat G\rVert / (\theta_{t-1}+\epsilon), \gamma)}\ (\tau_1 = 1),\quad
        \theta_t = \tau_t \lVert\hat G\rVert,\quad p_t = p_{t-1} - \eta\,\alpha\,\tau_t \hat G

    Weight decay is decoupled by default. Paper: "Towards Efficient Optimizer
    Design for LLM via Structured Fisher Approximation with a Low-Rank Extension",
    arXiv:2502.07752. Same defaults as the Keras seed.
    """

    name = "racs"
    family = "sgd"
    reference = "pytorch_optimizer.RACS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.9,
        alpha: Tunable = 0.05,
        gamma: Tunable = 1.01,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._hyper("alpha", alpha, 0.0, 1.0, "[)")
        self._hyper("gamma", gamma, 0.0, None, "(]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        rows, cols = racs_shape(parameter.shape)
        state["s"] = self.zeros(parameter, shape=(rows,))
        state["q"] = mx.ones((cols,), dtype=self.state_dtype or self.compute_dtype(parameter))
        state["theta"] = self.zeros(parameter, shape=())

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        G = g.reshape(racs_shape(g.shape))
        G2 = mx.square(G)
        s = F.lerp(state["s"], mx.mean(G2, axis=1), hp.one_minus_beta)
        q = F.lerp(state["q"], mx.mean(G2, axis=0), hp.one_minus_beta)
        g_hat = G / (mx.sqrt(s + hp.eps)[:, None] * mx.sqrt(q + hp.eps)[None, :])
        g_hat_norm = F.norm(g_hat)
        limit = hp.gamma / mx.maximum(g_hat_norm / (state["theta"] + hp.eps), hp.gamma)
        threshold = mx.where(hp.step == 1, 1.0, limit)
        state["s"], state["q"], state["theta"] = s, q, g_hat_norm * threshold
        return p - (hp.lr * hp.alpha * threshold) * g_hat.reshape(p.shape)


# ---------------------------------------------------------------------------- Gravity


@register
class Gravity(Optimizer):
    r"""Gravity (Bahrami & Zadeh, 2021), pytorch_optimizer semantics.

    A kinematic update: each gradient entry is damped by the tensor's largest
    gradient magnitude and averaged into a velocity with a step-dependent weight:

    .. math::
        \zeta_t = \frac{g_t}{1 + (g_t \max|g_t|)^2},\quad
        \beta_t = \frac{\beta t + 1}{t + 2},\quad
        v_t = \beta_t v_{t-1} + (1-\beta_t)\zeta_t,\quad p_t = p_{t-1} - \eta v_t

    The velocity starts as Gaussian noise with std :math:`\alpha/\eta`, drawn from
    ``state["key"]`` (seeded by ``seed``); it cannot match torch's RNG draw, so
    the parity rows inject the same initial velocity into the reference (the
    rest of the math is then exact) and compare the noise's statistics
    separately. Paper: "Gravity Optimizer: a Kinematic Approach on Optimization
    in Deep Learning", arXiv:2101.09192. Same defaults as the Keras seed.
    """

    name = "gravity"
    family = "sgd"
    reference = "pytorch_optimizer.Gravity"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        alpha: Tunable = 0.01,
        beta: Tunable = 0.9,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("alpha", alpha, 0.0, 1.0, "[)")
        self._hyper("beta", beta, 0.0, 1.0, "[]")
        self.state["key"] = mx.random.key(seed)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        key, sub = mx.random.split(self.state["key"])
        self.state["key"] = key
        std = self.state["alpha"] / self.state["learning_rate"]
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["v"] = (mx.random.normal(parameter.shape, key=sub) * std).astype(dtype)

    def step_scalars(self, hp) -> None:
        hp.beta_t = (hp.beta * hp.step + 1) / (hp.step + 2)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = 1.0 / mx.max(mx.abs(g))
        zeta = g / (1.0 + mx.square(g / m))
        v = F.lerp(state["v"], zeta, 1 - hp.beta_t)
        state["v"] = v
        return p - hp.lr * v
