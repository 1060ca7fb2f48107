"""AdamG (Pan et al., 2024): Adam with a golden-step numerator, nearly learning-rate free."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdamG(Optimizer):
    r"""AdamG: Adam with a golden-step numerator :math:`p\,v^q`, nearly learning-rate free.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        r_t = \beta_3 r_{t-1} + (1-\beta_3)\, p\, v_t^{q},\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) r_t g_t \\
        p_t = p_{t-1} - \frac{\min(\eta, 1/\sqrt t)}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    Paper: "Towards Stability of Parameter-free Optimization" (Pan et al., 2024), arXiv:2405.04376.
    Reference: ``pytorch_optimizer.AdamG``, same keywords and defaults (the numerator function's ``p`` and
    ``q`` keep the reference's names).

    Args:
        learning_rate: Upper bound :math:`\eta` of the step size :math:`\min(\eta, 1/\sqrt t)`: a float or a
            schedule (a callable of the step). Default ``1.0``.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`: decay rates of the scaled-gradient momentum and the
            squared gradient (each in [0, 1)) and of the numerator :math:`r` (in [0, 1]). Default
            ``(0.95, 0.999, 0.95)``.
        p: Scale :math:`p` (> 0) of the numerator function :math:`s(x) = p\,x^q`. Default ``0.2``.
        q: Exponent :math:`q` (> 0) of the numerator function. Default ``0.24``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adamg"
    family = "adam"
    reference = "pytorch_optimizer.AdamG"

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.95, 0.999, 0.95),
        p: Tunable = 0.2,
        q: Tunable = 0.24,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 3:
            raise ValueError(f"AdamG: betas={betas!r} must have 3 values")
        self._betas(betas[:2], 2)
        self._hyper("beta3", betas[2], 0.0, 1.0, "[]")
        self._hyper("p", p, 0.0, None, "()")
        self._hyper("q", q, 0.0, None, "()")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "m", "v", "r")

    def step_scalars(self, hp) -> None:
        hp.step_size = mx.minimum(hp.lr, mx.rsqrt(hp.step)) / hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        v = hp.beta2 * state["v"] + hp.one_minus_beta2 * mx.square(g)
        r = F.lerp(state["r"], hp.p * mx.power(v, hp.q), hp.one_minus_beta3)
        m = hp.beta1 * state["m"] + hp.one_minus_beta1 * r * g
        state["m"], state["v"], state["r"] = m, v, r
        return p - hp.step_size * m / (mx.sqrt(v / hp.bc2) + hp.eps)
