"""AdamG (Pan et al., 2024): Adam with a golden-step numerator, nearly learning-rate free."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdamG(Optimizer):
    r"""AdamG (Pan et al., 2024): Adam with a golden-step numerator, nearly learning-rate free.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        r_t = \beta_3 r_{t-1} + (1-\beta_3)\, p\, v_t^{q},\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) r_t g_t \\
        p_t = p_{t-1} - \frac{\min(\eta, 1/\sqrt t)}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    Paper: "Towards Stability of Parameter-free Optimization" (arXiv:2405.04376).
    The tunables ``p`` and ``q`` of the numerator function keep the reference's names.
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
        state["m"] = self.zeros(parameter)
        state["v"] = self.zeros(parameter)
        state["r"] = self.zeros(parameter)

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
