"""PNM: positive-negative momentum."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class PNM(Optimizer):
    r"""PNM: positive-negative momentum, two momentum buffers that swap roles every step.

    On odd steps buffer A is the positive momentum :math:`m^+` and B the negative one :math:`m^-`; on even
    steps they swap. With the current :math:`m^+`:

    .. math::
        m^+_t = \beta_1^2 m^+ + (1-\beta_1^2) g_t,\quad
        p_t = p_{t-1} - \frac{\eta}{\sqrt{(1+\beta_2)^2+\beta_2^2}}\big((1+\beta_2) m^+_t - \beta_2 m^-\big)

    Paper: Xie et al., "Positive-Negative Momentum: Manipulating Stochastic Gradient Noise to Improve
    Generalization", ICML 2021, arXiv:2103.17182.

    Reference: ``pytorch_optimizer.PNM`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``: :math:`\beta_1` sets the buffers' decay :math:`\beta_1^2`, :math:`\beta_2`
            the weight of the negative momentum; each in [0, 1]. Default ``(0.9, 1.0)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        eps: Validated (>= 0) but unused, as in the reference. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "pnm"
    family = "sgd"
    reference = "pytorch_optimizer.PNM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 1.0),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: float = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2, interval="[]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._check("eps", eps, 0.0)
        self.eps = eps

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "pos_momentum", "neg_momentum")

    def step_scalars(self, hp) -> None:
        hp.odd = mx.remainder(hp.step, 2.0) == 1.0
        hp.noise_norm = mx.sqrt((1.0 + hp.beta2) ** 2 + hp.beta2**2)
        hp.inv_noise_norm = 1.0 / hp.noise_norm
        hp.pos_weight, hp.neg_weight = 1.0 + hp.beta2, -hp.beta2
        hp.lerp_weight = 1.0 - hp.beta1**2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        a, b = state["pos_momentum"], state["neg_momentum"]
        pos = F.lerp(mx.where(hp.odd, a, b), g, hp.lerp_weight)
        a, b = mx.where(hp.odd, pos, a), mx.where(hp.odd, b, pos)
        state["pos_momentum"], state["neg_momentum"] = a, b
        # For one kernel per leaf (mlx_optim.fusion): the negative momentum is read from the new buffers (the
        # untouched one), so the update consumes both state outputs; and -b2 neg + (1 + b2) pos, exactly
        # (1 + b2) pos - b2 neg, makes mx.compile reach pos last through its shallowest use
        neg = mx.where(hp.odd, b, a)
        delta = (hp.neg_weight * neg + hp.pos_weight * pos) * hp.inv_noise_norm
        return p - hp.lr * delta
