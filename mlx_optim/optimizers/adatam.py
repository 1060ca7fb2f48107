"""AdaTAM: Adam with torque-aware momentum."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.norms import normalize_dim0
from mlx_optim.registry import register


@register
class AdaTAM(Optimizer):
    r"""AdaTAM: Adam whose momentum input is scaled by the alignment of the gradient with the momentum.

    .. math::
        s_t = \operatorname{lerp}(s_{t-1}, \hat m_{t-1} \odot \hat g_t, 1-\rho),\quad
        m_t = \beta_1 m_{t-1} + \big(\tfrac{1+s_t}{2} + \epsilon\big) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \eta\,\frac{m_t}{\sqrt{v_t} + \epsilon}

    where :math:`\hat x` is :math:`x` normalized along its first axis and :math:`\rho` = ``decay_rate``; no
    bias correction, as in the reference.

    Paper: "Torque-Aware Momentum" (2024), arXiv:2412.18790. Reference:
    ``pytorch_optimizer.AdaTAM``, same keywords and defaults.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the momentum and of the squared
            gradient. Default ``(0.9, 0.999)``.
        decay_rate: Decay rate :math:`\rho` in [0, 1) of the alignment average :math:`s`. Default ``0.9``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0), added to the momentum weight and to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
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
        self.zero_state(parameter, state, "s", "exp_avg", "exp_avg_sq")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        corr = normalize_dim0(state["exp_avg"]) * normalize_dim0(g)
        s = F.lerp(state["s"], corr, hp.one_minus_decay_rate)
        m = hp.beta1 * state["exp_avg"] + ((1 + s) / 2 + hp.eps) * g
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["s"], state["exp_avg"], state["exp_avg_sq"] = s, m, v
        return p - hp.lr * m / (mx.sqrt(v) + hp.eps)
