"""FAdam (Hwang, 2024): Adam as a natural gradient with the diagonal empirical Fisher."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def clip_rms(x: mx.array, clip) -> mx.array:
    """Scale ``x`` down so that its RMS is at most ``clip``."""
    return x / mx.maximum(F.rms(x) / clip, 1.0)


@register
class FAdam(Optimizer):
    r"""FAdam: Adam as a natural-gradient method, momentum of the Fisher-preconditioned, RMS-clipped gradient.

    .. math::
        f_t = \hat\beta_2(t) f_{t-1} + (1-\hat\beta_2(t)) g_t^2,\quad
        d_t = f_t^{\,p} + \min(\epsilon, \epsilon_2 \operatorname{RMS}(g_t))^{2p} \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1) \operatorname{clip}_{\mathrm{RMS}}(g_t / d_t),\quad
        p_t = p_{t-1} - \eta\,(m_t + \lambda \operatorname{clip}_{\mathrm{RMS}}(p_{t-1}/d_t))

    :math:`\hat\beta_2(t) = \beta_2 (1-\beta_2^{t-1})/(1-\beta_2^t)` is the bias-corrected Fisher decay;
    ``clip`` caps the RMS of the natural gradient and of the preconditioned weight decay.

    Paper: "FAdam: Adam is a natural gradient optimizer using diagonal empirical Fisher information" (Hwang,
    2024). Reference: ``pytorch_optimizer.FAdam``, same keywords and defaults; its ``momentum_dtype`` /
    ``fim_dtype`` are covered by ``state_dtype`` (both default to float32 there, as here for low-precision
    parameters).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the momentum and of the Fisher
            diagonal. Default ``(0.9, 0.999)``.
        weight_decay: Coefficient :math:`\lambda` (>= 0) of the preconditioned weight decay. Default ``0.1``.
        clip: RMS cap (> 0) of the natural gradient and of the preconditioned weight decay. Default ``1.0``.
        p: Exponent :math:`p` (> 0) of the Fisher diagonal. Default ``0.5``.
        eps: Upper bound :math:`\epsilon` (>= 0) of the adaptive epsilon before the exponent. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        eps_2: Multiplier :math:`\epsilon_2` (>= 0) of the gradient RMS in the adaptive epsilon. Default ``0.01``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "fadam"
    family = "adam"
    reference = "pytorch_optimizer.FAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.1,
        clip: Tunable = 1.0,
        p: Tunable = 0.5,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        eps_2: Tunable = 0.01,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("clip", clip, 0.0, None, "(]")
        self._hyper("p", p, 0.0, None, "(]")
        self._hyper("eps", eps, 0.0)
        self._hyper("eps_2", eps_2, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "momentum", "fim")

    def step_scalars(self, hp) -> None:
        # debias_beta(beta2, t) = beta2 (1 - beta2^(t-1)) / (1 - beta2^t), 0 on the first step
        hp.beta2_t = hp.beta2 * hp.bias_correction("beta2", hp.step - 1) / hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        fim = hp.beta2_t * state["fim"] + (1 - hp.beta2_t) * mx.square(g)
        state["fim"] = fim
        rms_grad = F.rms(g)
        scaled_eps = hp.eps_2 * rms_grad
        eps_power = mx.where(
            (rms_grad > 0) & (scaled_eps < hp.eps), mx.power(scaled_eps, 2 * hp.p), mx.power(hp.eps, 2 * hp.p)
        )
        fim_base = mx.power(fim, hp.p) + eps_power
        m = F.lerp(state["momentum"], clip_rms(g / fim_base, hp.clip), hp.one_minus_beta1)
        state["momentum"] = m
        update = m
        if self.decays():
            update = hp.weight_decay * clip_rms(p / fim_base, hp.clip) + m
        return p - hp.lr * update
