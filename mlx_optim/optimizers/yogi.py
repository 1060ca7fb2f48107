"""Yogi: Adam with an additive, sign-controlled second moment."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Yogi(Optimizer):
    r"""Yogi: Adam with an additive, sign-controlled second moment that grows or shrinks by at most one term.

    .. math::
        v_t = v_{t-1} - (1-\beta_2)\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    with :math:`m_t` Adam's first moment. Both moments start at ``initial_accumulator``.

    Paper: Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.

    Reference: ``pytorch_optimizer.Yogi`` (parity-checked), including its ``adam_debias`` option
    (keyword-only here).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-2``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        initial_accumulator: Initial value of both moments. Default ``1e-6``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-3``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step size by :math:`1-\beta_1^t` (keyword-only). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
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
