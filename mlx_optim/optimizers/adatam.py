"""AdaTAM (pytorch_optimizer): Adam whose momentum input is scaled by gradient-momentum alignment."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.norms import normalize_dim0
from mlx_optim.registry import register


@register
class AdaTAM(Optimizer):
    r"""AdaTAM (pytorch_optimizer): Adam whose momentum input is scaled by gradient-momentum alignment.

    .. math::
        s_t = \operatorname{lerp}(s_{t-1}, \hat m_{t-1} \odot \hat g_t, 1-\rho),\quad
        m_t = \beta_1 m_{t-1} + \big(\tfrac{1+s_t}{2} + \epsilon\big) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \eta\,\frac{m_t}{\sqrt{v_t} + \epsilon}

    where :math:`\hat x` is :math:`x` normalized along its first axis and
    :math:`\rho` = ``decay_rate``; no bias correction, as in the reference. Paper:
    "Torque-Aware Momentum" (arXiv:2412.18790).
    """

    name = "adatam"
    family = "adam"
    reference = "pytorch_optimizer.AdaTAM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
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
        self._betas(betas, 2)
        self._hyper("decay_rate", decay_rate, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.zeros(parameter)
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        corr = normalize_dim0(state["exp_avg"]) * normalize_dim0(g)
        s = F.lerp(state["s"], corr, hp.one_minus_decay_rate)
        m = hp.beta1 * state["exp_avg"] + ((1 + s) / 2 + hp.eps) * g
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["s"], state["exp_avg"], state["exp_avg_sq"] = s, m, v
        return p - hp.lr * m / (mx.sqrt(v) + hp.eps)
