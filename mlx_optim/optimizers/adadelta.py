"""AdaDelta (Zeiler, 2012)."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaDelta(Optimizer):
    r"""AdaDelta: a step scaled by the ratio of the RMS of past updates to the RMS of past gradients.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad
        \Delta_t = \frac{\sqrt{u_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}} g_t,\quad
        u_t = \rho u_{t-1} + (1-\rho)\Delta_t^2,\quad p_t = p_{t-1} - \eta \Delta_t

    Paper: "ADADELTA: An Adaptive Learning Rate Method" (Zeiler), arXiv:1212.5701, 2012. Reference:
    ``pytorch_optimizer.AdaDelta``, same keywords and defaults; unlike ``torch.optim.Adadelta`` it offers
    decoupled and fixed weight decay.

    Args:
        learning_rate: Step size :math:`\eta` applied to :math:`\Delta_t`: a float or a schedule (a callable of
            the step). Default ``1.0``.
        rho: Decay rate :math:`\rho` in [0, 1] of both running averages. Default ``0.9``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) inside both square roots. Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adadelta"
    family = "adaptive"
    reference = "pytorch_optimizer.AdaDelta"
    # the step delta feeds two outputs that do not feed each other (p' and acc_delta): mx.compile writes delta
    # to memory and gives each consumer its own kernel
    ops_per_leaf = 3

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        rho: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("rho", rho, 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "square_avg", "acc_delta")

    def step_scalars(self, hp) -> None:
        hp.one_minus_rho = hp.one_minus_rho

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        v = hp.rho * state["square_avg"] + hp.one_minus_rho * mx.square(g)
        delta = mx.sqrt(state["acc_delta"] + hp.eps) / mx.sqrt(v + hp.eps) * g
        state["square_avg"] = v
        state["acc_delta"] = hp.rho * state["acc_delta"] + hp.one_minus_rho * mx.square(delta)
        return p - hp.lr * delta
