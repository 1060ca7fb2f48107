"""BCOS (Jiang et al., 2025): block-coordinate optimal step sizes."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def bcos_conditional_v(g: mx.array, m: mx.array, beta: mx.array, beta2: mx.array | None, simple: bool) -> mx.array:
    """BCOS's conditional second-moment estimate (mode ``'c'``) from the gradient and the (updated) momentum.

    ``simple``: ``beta_v m^2 + (1 - beta_v) g^2`` with ``beta_v = beta2`` or ``1 - (1 - beta)^2``; otherwise
    ``(3 beta^2 - 2 beta^3) m^2 + (1 - beta)^2 g^2 + 2 beta (1 - beta)^2 m g``.
    """
    g2 = mx.square(g)
    if simple:
        beta_v = 1.0 - (1.0 - beta) ** 2 if beta2 is None else beta2
        return beta_v * mx.square(m) + (1.0 - beta_v) * g2
    one_minus = (1.0 - beta) ** 2
    return (3.0 * beta**2 - 2.0 * beta**3) * mx.square(m) + one_minus * g2 + 2.0 * beta * one_minus * m * g


@register
class BCOS(Optimizer):
    r"""BCOS: a search direction (gradient or momentum) divided by the root of a second-moment estimate.

    A search direction ``d`` (the gradient, mode ``'g'``, or the momentum ``m``, modes ``'m'``/``'c'``)
    divided by the square root of a second-moment estimate ``v``: an EMA of ``d^2`` (modes ``'g'``/``'m'``)
    or, in mode ``'c'``, a conditional estimate from ``m`` and ``g`` without extra state.

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t,\quad
        v_t = (3\beta^2 - 2\beta^3) m_t^2 + (1-\beta)^2 g_t^2 + 2\beta(1-\beta)^2 m_t g_t \ (\text{mode c}),\\
        p_t = p_{t-1} - \eta\, \frac{d_t}{\sqrt{v_t} + \epsilon}

    With ``simple_cond`` mode ``'c'`` uses :math:`v_t = \beta_v m_t^2 + (1-\beta_v) g_t^2` with
    :math:`\beta_v` = ``beta2`` or :math:`1-(1-\beta)^2`.

    Paper: "Stochastic Approximation with Block Coordinate Optimal Stepsizes" (Jiang et al., 2025),
    arXiv:2507.08963. Reference: ``pytorch_optimizer.BCOS``, same keywords and defaults. As the reference:
    ``m`` starts at the first gradient and ``v`` at its square (before weight decay); mode ``'c'`` evaluates
    its estimate with the *updated* momentum (the reference's ``old_m`` aliases the in-place updated buffer);
    weight decay is never ``fixed``.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        beta: Decay rate :math:`\beta` in [0, 1) of the momentum and (without ``beta2``) of the second moment.
            Default ``0.9``.
        beta2: Separate decay rate of the second moment; ``None`` uses ``beta`` (modes ``'g'``/``'m'``) or
            :math:`1-(1-\beta)^2` (``simple_cond``). Default ``None``.
        mode: Search direction and estimator: ``'g'`` (gradient), ``'m'`` (momentum) or ``'c'`` (momentum with
            the conditional estimator). Default ``'c'``.
        simple_cond: In mode ``'c'``, use the simplified conditional estimator. Default ``False``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.1``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "bcos"
    family = "adaptive"
    reference = "pytorch_optimizer.BCOS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.9,
        beta2: Tunable | None = None,
        mode: str = "c",
        simple_cond: bool = False,
        weight_decay: Tunable = 0.1,
        weight_decouple: bool = True,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._choice("mode", mode, ("g", "m", "c"))
        self._decay_options(weight_decay, weight_decouple, False)
        self._hyper("eps", eps, 0.0)
        self.has_beta2 = beta2 is not None
        if self.has_beta2:
            self._hyper("beta2", beta2)
        self.mode, self.simple_cond = mode, simple_cond

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.mode in ("m", "c"):
            state["m"] = self.zeros(parameter)
        if self.mode in ("g", "m"):
            state["v"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1  # the state starts at the first gradient

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g0 = g
        p, g = self.decay_weights(p, g)
        beta2 = hp.beta2 if self.has_beta2 else None
        d = g
        if self.mode in ("m", "c"):
            m = mx.where(hp.first, g0, state["m"])
            d = state["m"] = F.torch_lerp(m, g, hp.one_minus_beta)
        if self.mode in ("g", "m"):
            v = mx.where(hp.first, mx.square(g0), state["v"])
            v = state["v"] = F.torch_lerp(v, mx.square(d), 1.0 - (hp.beta if beta2 is None else beta2))
        else:
            v = bcos_conditional_v(g, d, hp.beta, beta2, self.simple_cond)
        return p - hp.lr * d / (mx.sqrt(v) + hp.eps)
