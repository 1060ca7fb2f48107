"""QHAdam: quasi-hyperbolic Adam."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class QHAdam(Optimizer):
    r"""QHAdam: Adam whose numerator and denominator blend the moment estimates with the current gradient.

    Bias-corrected moments via running weights :math:`w_t = \beta w_{t-1} + 1`:

    .. math::
        m_t = m_{t-1} + \tfrac{1}{w^{(1)}_t}(g_t - m_{t-1}),\quad
        v_t = v_{t-1} + \tfrac{1}{w^{(2)}_t}(g_t^2 - v_{t-1}),\\
        p_t = p_{t-1} - \eta \frac{\nu_1 m_t + (1-\nu_1) g_t}{\sqrt{\nu_2 v_t + (1-\nu_2) g_t^2} + \epsilon}

    The weights are the same for every tensor, so they are kept once in ``state["beta1_weight"]`` /
    ``state["beta2_weight"]``.

    Paper: Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019, arXiv:1810.06801.

    Reference: ``pytorch_optimizer.QHAdam`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        nus: ``(nu1, nu2)``, the weights :math:`\nu_1, \nu_2` of the moment estimates against the current
            gradient in the numerator and the denominator, each in [0, 1]; ``(1, 1)`` is Adam. Default
            ``(1.0, 1.0)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``False``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "qhadam"
    family = "adam"
    reference = "pytorch_optimizer.QHAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        nus: Sequence[float] = (1.0, 1.0),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        nus = tuple(nus)
        if len(nus) != 2:
            raise ValueError(f"QHAdam: nus={nus!r} must have 2 values")
        self._hyper("nu1", nus[0], 0.0, 1.0)
        self._hyper("nu2", nus[1], 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.globals["beta1_weight"] = mx.array(0.0, mx.float32)
        self.globals["beta2_weight"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        w1 = self.globals["beta1_weight"] * hp.beta1 + 1.0
        w2 = self.globals["beta2_weight"] * hp.beta2 + 1.0
        self.globals["beta1_weight"], self.globals["beta2_weight"] = w1, w2
        hp.inv_w1, hp.inv_w2 = 1.0 / w1, 1.0 / w2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        g_sq = mx.square(g)
        m = F.lerp(state["exp_avg"], g, hp.inv_w1)
        v = F.lerp(state["exp_avg_sq"], g_sq, hp.inv_w2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        avg_grad = hp.nu1 * m + hp.one_minus_nu1 * g
        avg_rms = mx.sqrt(hp.nu2 * v + hp.one_minus_nu2 * g_sq) + hp.eps
        return p - hp.lr * avg_grad / avg_rms
