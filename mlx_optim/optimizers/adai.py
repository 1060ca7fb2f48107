"""Adai, adaptive inertia (Xie et al., 2022): Adai and AdaiV2."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register


def adai_momentum(v_hat: mx.array, v_mean, beta0, dampening, eps) -> tuple[mx.array, mx.array]:
    r"""Adai's adaptive inertia: ``beta1 = clip(1 - beta0 (v_hat / mean(v_hat))^{1/(3-2d)}, 0, 1-eps)``
    and the gradient weight ``beta3 = (1 - beta1)^d``."""
    beta1 = mx.clip(1 - beta0 * mx.power(v_hat / v_mean, 1 / (3 - 2 * dampening)), 0.0, 1 - eps)
    return beta1, mx.power(1 - beta1, dampening)


@register
class Adai(Optimizer):
    r"""Adai: SGD with adaptive inertia, a per-coordinate momentum set by the coordinate's relative second moment.

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

    Paper: "Adaptive Inertia: Disentangling the Effects of Adaptive Learning Rate and Momentum" (Xie et al.),
    ICML 2022. Reference: ``pytorch_optimizer.Adai``, same keywords and defaults; its ``use_gc`` group option
    (``**kwargs``) is a keyword-only argument here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_0, \beta_2)`, each in [0, 1): the inertia scale :math:`\beta_0` and the decay
            rate of the second moment. Default ``(0.1, 0.99)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added to the gradient.
            Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        stable_weight_decay: Apply the weight decay after the second-moment update instead of before it.
            Default ``False``.
        dampening: Dampening :math:`d` of the momentum's gradient weight :math:`(1-\beta_{1,t})^d`; ``1.0``
            is the paper's Adai. Default ``1.0``.
        eps: :math:`\epsilon` (>= 0): the floor of the mean second moment and the margin below 1 of
            :math:`\beta_{1,t}`. Default ``1e-3``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        use_gc: Gradient centralization: subtract from each gradient with more than one dimension its mean over
            all axes but the first. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adai"
    family = "sgd"
    reference = "pytorch_optimizer.Adai"
    shared_tunables = ("beta2", "eps", "weight_decay")  # the second moments and their mean: in prepare

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


def _args_of(source: type):
    """Class decorator: append ``source``'s ``Args:`` section to the class's docstring (the same keywords)."""

    def decorate(cls: type) -> type:
        args = source.__doc__[source.__doc__.index("    Args:\n") :]
        cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n{args.rstrip()}\n    "
        return cls

    return decorate


@register
@_args_of(Adai)
class AdaiV2(Adai):
    r"""AdaiV2: generalized Adai, whose ``dampening`` sets the nonlinearity of the adaptive inertia.

    With dampening :math:`d` the inertia is :math:`\beta_1 = 1 - \beta_0 (\hat v/\bar v)^{1/(3-2d)}` and the
    gradient weight :math:`(1-\beta_1)^d`. pytorch_optimizer's :class:`Adai` already has this ``dampening``
    option, so this is :class:`Adai` with the same math, keywords and defaults (``dampening=1.0``, where it
    reduces to the paper's Adai), registered under its own name. Reference: ``pytorch_optimizer.Adai``.
    """

    name = "adaiv2"
    reference = "pytorch_optimizer.Adai"
