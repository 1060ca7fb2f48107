"""Apollo (Ma, 2020): an adaptive method with a diagonal quasi-Newton Hessian approximation."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def apollo_step(
    g: mx.array,
    m: mx.array,
    b: mx.array,
    d: mx.array,
    alpha: mx.array,
    eps: mx.array,
    rebound: str,
) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """One Apollo step: new ``(exp_avg_grad, approx_hessian, direction, denominator)`` (direction before weight decay).

    The diagonal Hessian ``b`` is corrected by the weak secant condition along the previous step ``d``
    (normalized by its 4-norm), then rectified: ``max(|b|, 1e-2)`` (``constant``) or
    ``max(|b|, ||g - m||_inf) + eps / alpha`` (``belief``).
    """
    delta_grad = g - m
    m = m + alpha * delta_grad
    de_nom = mx.sum(mx.square(mx.square(d))) ** 0.25 + eps
    d = d / de_nom
    v_sq = d * d
    delta = -alpha * mx.sum(delta_grad / de_nom * d) - mx.sum(b * v_sq)
    b = b + v_sq * delta
    if rebound == "belief":
        de_nom = mx.maximum(mx.abs(b), mx.max(mx.abs(delta_grad))) + eps / alpha
    else:
        de_nom = mx.maximum(mx.abs(b), 1e-2)
    return m, b, m / de_nom, de_nom


@register
class ApolloDQN(Optimizer):
    r"""ApolloDQN: Apollo, a diagonal quasi-Newton method that preconditions momentum by a rectified secant Hessian.

    With :math:`\alpha_t = (1-\beta)/(1-\beta^t)` and :math:`d_{t-1}` the previous update direction,

    .. math::
        m_t = m_{t-1} + \alpha_t (g_t - m_{t-1}),\quad
        d' = d_{t-1} / (\lVert d_{t-1}\rVert_4 + \epsilon),\quad
        B_t = B_{t-1} + \Big(\tfrac{-\alpha_t (g_t - m_{t-1})\cdot d'}{\lVert d_{t-1}\rVert_4 + \epsilon}
              - B_{t-1}\cdot d'^2\Big) d'^2,\\
        d_t = m_t / \max(|B_t|, \sigma),\quad p_t = p_{t-1} - \eta_t d_t

    where :math:`\sigma = 10^{-2}` (``rebound='constant'``, whose ``eps`` is divided by ``1e-2`` as in the
    reference) or :math:`\sigma = \lVert g_t - m_{t-1}\rVert_\infty` plus :math:`\epsilon/\alpha_t`
    (``'belief'``). The learning rate warms up linearly from ``init_lr`` to ``learning_rate`` over
    ``warmup_steps``. Weight decay: ``'l2'`` (added to the gradient), ``'decoupled'`` (``wd * p`` added to
    :math:`d_t`) or ``'stable'`` (``wd / mean(denominator) * p``); as in the reference the decay term is kept in
    the stored direction :math:`d_t`.

    Paper: "Apollo: An Adaptive Parameter-wise Diagonal Quasi-Newton Method for Nonconvex Stochastic
    Optimization" (Ma, 2020), arXiv:2009.13586. Reference: ``pytorch_optimizer.ApolloDQN``, same keywords and
    defaults; registered as ``apollodqn`` because ``apollo`` is :class:`APOLLO`. Reference quirk followed:
    ``init_lr`` defaults to ``1e-5`` (``None`` means ``learning_rate / 1000``). Difference: the warmup
    interpolates towards the current ``learning_rate`` (the reference uses the constructor's ``lr``; they
    differ only if the learning rate is a schedule or changed later).

    Args:
        learning_rate: Step size after warmup: a float or a schedule (a callable of the step). Default ``1e-2``.
        init_lr: Step size at the start of the warmup; ``None`` means ``learning_rate / 1000``. Default ``1e-5``.
        beta: Decay rate :math:`\beta` in [0, 1) of the gradient average. Default ``0.9``.
        rebound: Rectification of the diagonal Hessian: ``"constant"`` or ``"belief"``. Default ``"constant"``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decay_type: ``"l2"``, ``"decoupled"`` or ``"stable"`` (see above). Default ``"l2"``.
        warmup_steps (int): Number of linear warmup steps. Default ``500``.
        eps: :math:`\epsilon` (>= 0) in the normalization and the ``'belief'`` bound. Default ``1e-4``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "apollodqn"
    family = "quasi-newton"
    reference = "pytorch_optimizer.ApolloDQN"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        init_lr: Tunable | None = 1e-5,
        beta: Tunable = 0.9,
        rebound: str = "constant",
        weight_decay: Tunable = 0.0,
        weight_decay_type: str = "l2",
        warmup_steps: int = 500,
        eps: Tunable = 1e-4,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._choice("rebound", rebound, ["constant", "belief"])
        self._hyper("weight_decay", weight_decay, 0.0)
        self._choice("weight_decay_type", weight_decay_type, ["l2", "decoupled", "stable"])
        self._hyper("eps", eps, 0.0)
        if init_lr is None:
            lr = learning_rate
            init_lr = (lambda step: lr(step) / 1000.0) if callable(lr) else lr / 1000.0
        self._hyper("init_lr", init_lr)
        self.rebound, self.weight_decay_type, self.warmup_steps = rebound, weight_decay_type, int(warmup_steps)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg_grad", "approx_hessian", "update")

    def step_scalars(self, hp) -> None:
        warm = (hp.lr - hp.init_lr) * hp.step / max(self.warmup_steps, 1) + hp.init_lr
        hp.current_lr = mx.where(hp.step >= self.warmup_steps, hp.lr, warm)
        hp.alpha = hp.one_minus_beta / hp.bias_correction("beta")
        hp.apollo_eps = hp.eps / 1e-2 if self.rebound == "constant" else hp.eps

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        decay = self.decays()
        if decay and self.weight_decay_type == "l2":
            g = g + hp.weight_decay * p
        m, b, d, de_nom = apollo_step(
            g, state["exp_avg_grad"], state["approx_hessian"], state["update"], hp.alpha, hp.apollo_eps, self.rebound
        )
        if decay and self.weight_decay_type == "stable":
            d = d + hp.weight_decay / mx.mean(de_nom) * p
        elif decay and self.weight_decay_type == "decoupled":
            d = d + hp.weight_decay * p
        state["exp_avg_grad"], state["approx_hessian"], state["update"] = m, b, d
        return p - hp.current_lr * d
