"""D-Adaptation (Defazio & Mishchenko, 2023): DAdaptAdaGrad, DAdaptAdam, DAdaptSGD, DAdaptLion, DAdaptAdan."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.docargs import fill_args
from mlx_optim.functional.subset_norm import sn_expand, sn_reduce
from mlx_optim.registry import register

_F32 = mx.float32


def _scalar(value: float = 0.0) -> mx.array:
    return mx.array(value, _F32)


_sum = F.sum_all  # whole-tensor float32 sums, split for large tensors (faster and shorter chains on the CPU)


def grow_d(d: mx.array, d_hat: mx.array, growth_rate: Any) -> mx.array:
    """D-Adaptation's monotone update ``max(d, min(d_hat, d * growth_rate))``."""
    return mx.maximum(d, mx.minimum(d_hat, d * growth_rate))


_DADAPT_ARGS: dict[str, str] = {
    "learning_rate": r"Multiplier :math:`\eta` of the adapted step size :math:`D_k \eta` (keep 1.0 unless training "
    "is unstable): a float or a schedule (a callable of the step).",
    "momentum": r"Momentum :math:`\mu` in [0, 1) of the iterate averaging.",
    "growth_rate": "Maximum factor by which :math:`D` may grow per step.",
    "weight_decay": "Weight decay coefficient (>= 0).",
    "weight_decouple": "Decoupled decay ``x <- x (1 - d_lr wd)`` instead of an L2 penalty added to the gradient.",
    "fixed_decay": "With decoupled decay, do not scale it by ``d_lr``.",
    "eps": r":math:`\epsilon` (>= 0) added to the denominator.",
    "maximize": "Maximize the objective instead of minimizing it (the gradient is negated).",
    "state_dtype": "dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the "
    "parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.",
}
"""``Args:`` text the D-Adaptation optimizers share (:func:`mlx_optim.docargs.fill_args`)."""
_dadapt_args = fill_args(_DADAPT_ARGS)


class _DAdaptBase(Optimizer):
    """Shared plumbing: the first pass over the tree and the global scalars."""

    family = "learning-rate-free"
    # D is estimated once from every parameter with one set of values (the reference reads them from the first
    # group and allows other learning rates only of 0): nothing differs per parameter group.
    shared_tunables = ("*",)
    shared_tunables_reason = "D-Adaptation estimates D once from all parameters with one set of values"
    zero_compatible = True  # its cross-leaf sums go through global_sum

    def _global(self, name: str, value: float) -> None:
        self.globals[name] = _scalar(value)

    def _leaves(self, gradients: Any, parameters: Any) -> Iterator[tuple[mx.array, mx.array, dict]]:
        """``(g, p, state)`` per leaf in update order, cast to the compute dtype, ``maximize`` applied."""
        for path, g, p, state in leaves(gradients, parameters, self.state):
            dtype = self.compute_dtype(p)
            g, p = g.astype(dtype), p.astype(dtype)
            self._leaf_path = path  # for decay_filter in apply_weight_decay / decays()
            yield (-g if self.maximize else g), p, state

    def _next_d(self, d_hat: mx.array, skip: mx.array) -> None:
        """``D <- max(D, min(d_hat, D * growth_rate))`` (:func:`grow_d`), kept on a skipped step or when lr <= 0."""
        d = self.globals["d"]
        self.globals["d"] = mx.where(skip | (self.hp.lr <= 0), d, grow_d(d, d_hat, self.hp.growth_rate))

    def _decouple_step(self, p: mx.array, lr: Any) -> mx.array:
        p, _ = self.apply_weight_decay(p, p, decouple=True, fixed=self.fixed_decay, lr=lr)
        return p

    def _coupled(self, g: mx.array, p: mx.array) -> mx.array:
        if self.weight_decouple:
            return g
        _, g = self.apply_weight_decay(p, g, decouple=False)
        return g


@register
@_dadapt_args
class DAdaptAdaGrad(_DAdaptBase):
    r"""DAdaptAdaGrad: learning-rate-free AdaGrad (dual-averaging form) whose step size D is estimated on the fly.

    With :math:`\lambda_k = D_k\,\eta` (``d_lr``), per element

    .. math::
        \alpha_k = \alpha_{k-1} + g_k^2,\quad s_k = s_{k-1} + \lambda_k g_k,\quad
        z_k = x_0 - \frac{s_k}{\sqrt{\alpha_k}+\epsilon},\quad
        x_k = (1-\mu)\text{-lerp}(x_{k-1}, z_k)

    and globally :math:`\hat D = \big(\sum \tfrac{s_k^2}{\sqrt{\alpha_k}+\epsilon}
    - \sum_i \lambda_i^2 \sum \tfrac{g_i^2}{\sqrt{\alpha_i}+\epsilon}\big) / \lVert s_k\rVert_1`,
    :math:`D_{k+1} = \max(D_k, \min(\hat D, D_k\cdot\text{growth\_rate}))`. The weighted
    sums are kept as running totals (``state["sk_sq_weighted"]``, ``state["gsq_weighted"]``,
    ``state["sk_l1"]``) updated by per-step changes, as in the reference; the new
    :math:`D` is used from the next step on.

    Paper: "Learning-Rate-Free Learning by D-Adaptation" (Defazio & Mishchenko), ICML 2023.
    Reference: ``pytorch_optimizer.DAdaptAdaGrad``, same keywords and defaults. Reference quirks kept:
    :math:`\alpha` starts at ``1e-6``; decoupled weight decay scales by ``lr`` (not ``d * lr``) and, because
    :math:`x_k = z_k` when ``momentum == 0``, only has an effect with momentum. Sparse gradients are not
    supported.

    Args:
        d0 (float): Initial estimate :math:`D_0` of the distance to the solution. Default ``1e-6``.
        weight_decouple: Decoupled decay (by ``lr``, see above) instead of an L2 penalty added to the gradient.
            Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
    """

    name = "dadaptadagrad"
    reference = "pytorch_optimizer.DAdaptAdaGrad"

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        momentum: Tunable = 0.0,
        d0: float = 1e-6,
        growth_rate: Tunable = float("inf"),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._check("d0", d0)
        self._hyper("growth_rate", growth_rate)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._global("d", d0)
        self._global("gsq_weighted", 0.0)
        self._global("sk_sq_weighted", 0.0)
        self._global("sk_l1", 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["alpha_k"] = self.full(parameter, 1e-6)
        state["sk"] = self.zeros(parameter)
        state["x0"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp, st = self.hp, self.globals
        d = st["d"]
        d_lr = d * hp.lr
        g_sq = sk_sq_change = sk_l1_change = _scalar()
        for g, p, state in self._leaves(gradients, parameters):
            g = self._coupled(g, p)
            alpha, sk = state["alpha_k"], state["sk"]
            old_weighted, old_l1 = _sum(mx.square(sk) / (mx.sqrt(alpha) + hp.eps)), _sum(mx.abs(sk))
            alpha = alpha + mx.square(g)
            de_nom = mx.sqrt(alpha) + hp.eps
            g_sq = g_sq + _sum(mx.square(g) / de_nom)
            sk = sk + d_lr * g
            sk_sq_change = sk_sq_change + (_sum(mx.square(sk) / de_nom) - old_weighted)
            sk_l1_change = sk_l1_change + (_sum(mx.abs(sk)) - old_l1)
            state["alpha_k"], state["sk"] = alpha, sk
        g_sq, sk_sq_change, sk_l1_change = (self.global_sum(x) for x in (g_sq, sk_sq_change, sk_l1_change))
        st["sk_sq_weighted"] = st["sk_sq_weighted"] + sk_sq_change
        st["gsq_weighted"] = st["gsq_weighted"] + mx.square(d_lr) * g_sq
        st["sk_l1"] = st["sk_l1"] + sk_l1_change
        hp.skip = st["sk_l1"] == 0
        self._next_d((st["sk_sq_weighted"] - st["gsq_weighted"]) / st["sk_l1"], hp.skip)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.weight_decouple:
            p = self._decouple_step(p, hp.lr)
        z = state["x0"] - state["sk"] / (mx.sqrt(state["alpha_k"]) + hp.eps)
        new = z if "momentum" in self._zero else F.lerp(p, z, hp.one_minus_momentum)
        return mx.where(hp.skip, p, new)


@register
@_dadapt_args
class DAdaptAdam(_DAdaptBase):
    r"""DAdaptAdam: learning-rate-free Adam (D-Adaptation V3) whose step size D is estimated on the fly.

    With :math:`\lambda_k = D_k\,\eta` (divided by :math:`(1-\beta_1^k)/\sqrt{1-\beta_2^k}`
    when ``bias_correction``) and :math:`\rho = \sqrt{\beta_2}`:

    .. math::
        r_k = \rho\, r_{k-1} + (1-\rho)\,\lambda_k \Big\langle g_k, \frac{s_{k-1}}{\sqrt{v_{k-1}}+\epsilon}\Big\rangle,
        \quad s_k = \rho\, s_{k-1} + (1-\rho)\lambda_k g_k \\
        m_k = \beta_1 m_{k-1} + (1-\beta_1)\lambda_k g_k,\quad
        v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2,\quad
        x_k = x_{k-1} - \frac{m_k}{\sqrt{v_k}+\epsilon} \\
        D_{k+1} = \max\Big(D_k, \min\Big(\frac{r_k}{(1-\rho)\lVert s_k\rVert_1}, D_k\cdot\text{growth\_rate}\Big)\Big)

    :math:`r_k` is ``state["numerator_weighted"]``; the new :math:`D` is used from the
    next step on (this step's :math:`\lambda_k` is already folded into :math:`m_k`).
    Decoupled weight decay shrinks by ``d_lr * weight_decay``.

    Paper: "Learning-Rate-Free Learning by D-Adaptation" (Defazio & Mishchenko), ICML 2023.
    Reference: ``pytorch_optimizer.DAdaptAdam``, same keywords and defaults.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        d0 (float): Initial estimate :math:`D_0` of the distance to the solution. Default ``1e-6``.
        bias_correction: Divide the step :math:`\lambda_k` by Adam's bias corrections. Default ``False``.
    """

    name = "dadaptadam"
    reference = "pytorch_optimizer.DAdaptAdam"
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: sn hook

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.9, 0.999),
        d0: float = 1e-6,
        growth_rate: Tunable = float("inf"),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        bias_correction: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("d0", d0)
        self._hyper("growth_rate", growth_rate)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.bias_correction = bias_correction
        self._global("d", d0)
        self._global("numerator_weighted", 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.zeros(parameter)
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.d_lr = self.globals["d"] * hp.lr
        if self.bias_correction:
            hp.d_lr = hp.d_lr / (hp.bias_correction("beta1") / mx.sqrt(hp.bias_correction("beta2")))
        hp.beta2_sq = mx.sqrt(hp.beta2)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp, st = self.hp, self.globals
        numerator, sk_l1 = _scalar(), _scalar()
        for g, p, state in self._leaves(gradients, parameters):
            g = self._coupled(g, p)
            s, v = state["s"], state["exp_avg_sq"]
            numerator = numerator + hp.d_lr * _sum(g * (s / (mx.sqrt(sn_expand(v, g.shape)) + hp.eps)))
            state["exp_avg"] = hp.beta1 * state["exp_avg"] + hp.d_lr * hp.one_minus_beta1 * g
            state["exp_avg_sq"] = hp.beta2 * v + hp.one_minus_beta2 * sn_reduce(mx.square(g), v)
            s = hp.beta2_sq * s + hp.d_lr * (1 - hp.beta2_sq) * g
            state["s"] = s
            sk_l1 = sk_l1 + _sum(mx.abs(s))
        numerator, sk_l1 = self.global_sum(numerator), self.global_sum(sk_l1)  # over ranks when state is sharded
        hp.skip = sk_l1 == 0
        nw = mx.where(hp.skip, st["numerator_weighted"], F.lerp(st["numerator_weighted"], numerator, 1 - hp.beta2_sq))
        st["numerator_weighted"] = nw
        self._next_d(nw / ((1 - hp.beta2_sq) * sk_l1), hp.skip)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        new = self._decouple_step(p, hp.d_lr) if self.weight_decouple else p
        new = new - state["exp_avg"] / (mx.sqrt(sn_expand(state["exp_avg_sq"], p.shape)) + hp.eps)
        return mx.where(hp.skip, p, new)


@register
@_dadapt_args
class DAdaptSGD(_DAdaptBase):
    r"""DAdaptSGD: learning-rate-free SGD (D-Adaptation V3, dual-averaging form) whose step size D is estimated.

    With :math:`\lambda_k = D_k\,\eta / \lVert g_1\rVert` (the global gradient norm of
    the first step, ``state["g0_norm"]``):

    .. math::
        r_k = r_{k-1} + \lambda_k \langle g_k, s_{k-1}\rangle,\quad s_k = s_{k-1} + \lambda_k g_k,\quad
        x_k = (1-\mu)\text{-lerp}(x_{k-1},\, x_0 - s_k) \\
        D_{k+1} = \max\big(D_k, \min(2 r_k / \lVert s_k\rVert_2,\; D_k\cdot\text{growth\_rate})\big)

    :math:`r_k` is ``state["numerator_weighted"]`` (a running sum over all steps); the
    new :math:`D` is used from the next step on.

    Paper: "Learning-Rate-Free Learning by D-Adaptation" (Defazio & Mishchenko), ICML 2023.
    Reference: ``pytorch_optimizer.DAdaptSGD``, same keywords and defaults. As in the reference, a step whose
    first-step gradient norm is zero changes nothing (and the norm is taken again on the next step), weight
    decay (coupled, or decoupled by ``d_lr * weight_decay``) comes before the dual-averaging step, and
    ``z = x0 - s`` is not stored (it is recomputed).

    Args:
        d0 (float): Initial estimate :math:`D_0` of the distance to the solution. Default ``1e-6``.
    """

    name = "dadaptsgd"
    reference = "pytorch_optimizer.DAdaptSGD"

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        momentum: Tunable = 0.9,
        d0: float = 1e-6,
        growth_rate: Tunable = float("inf"),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._check("d0", d0)
        self._hyper("growth_rate", growth_rate)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._global("d", d0)
        self._global("numerator_weighted", 0.0)
        self._global("g0_norm", 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.zeros(parameter)
        state["x0"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp, st = self.hp, self.globals
        items = list(self._leaves(gradients, parameters))
        g_norm = mx.sqrt(self.global_sum(sum((mx.square(F.norm(g)) for g, _, _ in items), _scalar())))
        g0 = mx.where(st["g0_norm"] == 0, g_norm, st["g0_norm"])
        hp.skip = skip = g0 == 0
        d = st["d"]
        hp.d_lr = d * hp.lr / g0
        numerator, sk_sq = _scalar(), _scalar()
        for g, p, state in items:
            g = self._coupled(g, p)
            s = state["s"]
            numerator = numerator + hp.d_lr * _sum(g * s)
            s = s + hp.d_lr * g
            state["s"] = mx.where(skip, state["s"], s)
            sk_sq = sk_sq + _sum(mx.square(s))
        numerator = st["numerator_weighted"] + self.global_sum(numerator)
        sk_sq = self.global_sum(sk_sq)
        st["g0_norm"] = g0
        st["numerator_weighted"] = mx.where(skip, st["numerator_weighted"], numerator)
        self._next_d(2.0 * numerator / mx.sqrt(sk_sq), skip)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        new = self._decouple_step(p, hp.d_lr) if self.weight_decouple else p
        new = F.lerp(new, state["x0"] - state["s"], hp.one_minus_momentum)
        return mx.where(hp.skip, p, new)


@register
@_dadapt_args
class DAdaptLion(_DAdaptBase):
    r"""DAdaptLion: learning-rate-free Lion (D-Adaptation V3) whose step size D is estimated on the fly.

    With :math:`\lambda_k = D_k\,\eta` and :math:`\rho = \sqrt{\beta_2}`:

    .. math::
        u_k = \operatorname{sign}(\beta_1 m_{k-1} + (1-\beta_1) g_k),\quad
        x_k = x_{k-1} - \lambda_k u_k,\quad m_k = \beta_2 m_{k-1} + (1-\beta_2)\lambda_k g_k \\
        r_k = \rho\, r_{k-1} + (1-\rho)\lambda_k\langle u_k, s_{k-1}\rangle,\quad
        s_k = \rho\, s_{k-1} + (1-\rho)\lambda_k u_k,\quad
        D_{k+1} = \max\Big(D_k, \frac{r_k}{(1-\rho)\lVert s_k\rVert_1}\Big)

    :math:`r_k` is ``state["numerator_weighted"]``. The global sums are taken in
    :meth:`prepare` (which updates ``s``); the Lion step and ``m`` in
    ``update_single``, both from this step's :math:`\lambda_k`.

    Paper: "Learning-Rate-Free Learning by D-Adaptation" (Defazio & Mishchenko), ICML 2023.
    Lion: "Symbolic Discovery of Optimization Algorithms" (Chen et al.), NeurIPS 2023. Reference:
    ``pytorch_optimizer.DAdaptLion``, same keywords and defaults. As in the reference, :math:`r_k` is updated
    even when :math:`\lVert s_k\rVert_1 = 0` (then only :math:`D` is kept), there is no ``growth_rate``, and
    weight decay (coupled, or decoupled by ``d_lr * weight_decay``) comes first.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): the interpolation factor of the update direction and
            the momentum's decay rate. Default ``(0.9, 0.999)``.
        d0 (float): Initial estimate :math:`D_0` of the distance to the solution. Default ``1e-6``.
    """

    name = "dadaptlion"
    reference = "pytorch_optimizer.DAdaptLion"

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.9, 0.999),
        d0: float = 1e-6,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("d0", d0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._global("d", d0)
        self._global("numerator_weighted", 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["s"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.d_lr = self.globals["d"] * hp.lr
        hp.beta2_sq = mx.sqrt(hp.beta2)

    def _direction(self, g: mx.array, state: dict) -> mx.array:
        return F.sign(F.lerp(state["exp_avg"], g, 1 - self.hp.beta1))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp, st = self.hp, self.globals
        numerator, sk_l1 = _scalar(), _scalar()
        for g, p, state in self._leaves(gradients, parameters):
            update, s = self._direction(self._coupled(g, p), state), state["s"]
            numerator = numerator + hp.d_lr * _sum(update * s)
            s = hp.beta2_sq * s + (1 - hp.beta2_sq) * hp.d_lr * update
            state["s"] = s
            sk_l1 = sk_l1 + _sum(mx.abs(s))
        numerator, sk_l1 = self.global_sum(numerator), self.global_sum(sk_l1)
        nw = F.lerp(st["numerator_weighted"], numerator, 1 - hp.beta2_sq)
        st["numerator_weighted"] = nw
        d = st["d"]
        d_hat = nw / ((1 - hp.beta2_sq) * sk_l1)
        st["d"] = mx.where((sk_l1 == 0) | (hp.lr <= 0), d, mx.maximum(d, d_hat))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g = self._coupled(g, p)
        update = self._direction(g, state)
        state["exp_avg"] = hp.beta2 * state["exp_avg"] + hp.one_minus_beta2 * hp.d_lr * g
        if self.weight_decouple:
            p = self._decouple_step(p, hp.d_lr)
        return p - hp.d_lr * update


@register
@_dadapt_args
class DAdaptAdan(_DAdaptBase):
    r"""DAdaptAdan: learning-rate-free Adan whose step size D is estimated on the fly (D-Adaptation).

    With :math:`\lambda_k = D_k\,\eta` and :math:`\Delta_k = g_k - g_{k-1}` (zero on the
    first step):

    .. math::
        m_k = \beta_1 m_{k-1} + (1-\beta_1)\lambda_k g_k,\quad
        n_k = \beta_2 n_{k-1} + (1-\beta_2)\lambda_k \Delta_k,\quad
        v_k = \beta_3 v_{k-1} + (1-\beta_3)\,(g_k + \beta_2\Delta_k)^4 \\
        s_k = \beta_3 s_{k-1} + (1-\beta_3)\lambda_k g_k,\quad
        G_k = \beta_3 G_{k-1} + (1-\beta_3)\lambda_k^2 \sum \frac{g_k^2}{\sqrt{v_k}+\epsilon} \\
        D_{k+1} = \max\Big(D_k, \min\Big(\frac{\sum s_k^2/(\sqrt{v_k}+\epsilon)\,/(1-\beta_3) - G_k}
        {\lVert s_k\rVert_1}, D_k\cdot\text{growth\_rate}\Big)\Big) \\
        x_k = x_{k-1} - \frac{m_k + \beta_2 n_k}{\sqrt{v_k}+\epsilon}

    :math:`G_k` is ``state["gsq_weighted"]``. Weight decay uses this step's
    :math:`\lambda_k`: decoupled ``x (1 - lambda wd)`` before the step, otherwise
    ``x / (1 + lambda wd)`` after it (there is no ``fixed_decay``).

    Paper: "Learning-Rate-Free Learning by D-Adaptation" (Defazio & Mishchenko), ICML 2023.
    Adan: "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models" (Xie et al., 2022).
    Reference: ``pytorch_optimizer.DAdaptAdan``, same keywords and defaults. Reference quirks kept: the second
    moment averages the *fourth* power of :math:`g_k + \beta_2\Delta_k` (it squares an already squared tensor);
    the previous gradient starts as minus the *raw* first gradient, so with ``maximize`` the first
    :math:`\Delta` is :math:`-2 g_1` rather than zero.

    Args:
        betas: :math:`(\beta_1, \beta_2, \beta_3)`, each in [0, 1): decay rates of the gradient, the gradient
            difference and the second moment. Default ``(0.98, 0.92, 0.99)``.
        weight_decouple: Decoupled decay before the step instead of the proximal division after it. Default
            ``False``.
        d0 (float): Initial estimate :math:`D_0` of the distance to the solution. Default ``1e-6``.
    """

    name = "dadaptadan"
    reference = "pytorch_optimizer.DAdaptAdan"
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: sn hook

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.98, 0.92, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        d0: float = 1e-6,
        growth_rate: Tunable = float("inf"),
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 3)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("d0", d0)
        self._hyper("growth_rate", growth_rate)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple
        self._global("d", d0)
        self._global("gsq_weighted", 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.zeros(parameter)
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["exp_avg_diff"] = self.zeros(parameter)
        state["previous_grad"] = self.zeros(parameter)  # minus the raw gradient on the first step

    def step_scalars(self, hp) -> None:
        hp.d_lr = self.globals["d"] * hp.lr

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp, st = self.hp, self.globals
        b1, b2, b3 = hp.beta1, hp.beta2, hp.beta3
        g_sq, sk_sq_weighted, sk_l1 = _scalar(), _scalar(), _scalar()
        for g, _, state in self._leaves(gradients, parameters):
            # the reference initialises previous_grad to -grad before negating it for maximize
            first = g if self.maximize else -g
            grad_diff = mx.where(hp.step == 1, first, state["previous_grad"]) + g
            state["exp_avg"] = b1 * state["exp_avg"] + hp.d_lr * (1 - b1) * g
            state["exp_avg_diff"] = b2 * state["exp_avg_diff"] + hp.d_lr * (1 - b2) * grad_diff
            grad_diff = mx.square(b2 * grad_diff + g)
            v = b3 * state["exp_avg_sq"] + (1 - b3) * sn_reduce(mx.square(grad_diff), state["exp_avg_sq"])
            de_nom = mx.sqrt(sn_expand(v, g.shape)) + hp.eps
            g_sq = g_sq + _sum(mx.square(g) / de_nom)
            s = b3 * state["s"] + hp.d_lr * (1 - b3) * g
            sk_sq_weighted = sk_sq_weighted + _sum(mx.square(s) / de_nom)
            sk_l1 = sk_l1 + _sum(mx.abs(s))
            state["exp_avg_sq"], state["s"], state["previous_grad"] = v, s, -g
        g_sq, sk_sq_weighted, sk_l1 = (self.global_sum(x) for x in (g_sq, sk_sq_weighted, sk_l1))
        hp.skip = sk_l1 == 0
        gsq = b3 * st["gsq_weighted"] + mx.square(hp.d_lr) * (1 - b3) * g_sq
        st["gsq_weighted"] = gsq = mx.where(hp.skip, st["gsq_weighted"], gsq)
        self._next_d((sk_sq_weighted / (1 - b3) - gsq) / sk_l1, hp.skip)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        de_nom = mx.sqrt(sn_expand(state["exp_avg_sq"], p.shape)) + hp.eps
        decay = self.decays()
        new = F.decoupled_decay(p, hp.d_lr, hp.weight_decay) if decay and self.weight_decouple else p
        new = new - state["exp_avg"] / de_nom
        new = new - hp.beta2 * state["exp_avg_diff"] / de_nom
        if decay and not self.weight_decouple:
            new = new / (1 + hp.d_lr * hp.weight_decay)
        return mx.where(hp.skip, p, new)
