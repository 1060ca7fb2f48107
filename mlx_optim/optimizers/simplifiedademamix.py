"""Simplified AdEMAMix: one un-normalized momentum plus a weighted current gradient."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class SimplifiedAdEMAMix(Optimizer):
    r"""Simplified AdEMAMix: Adam with one theory-style (un-normalized) momentum plus ``alpha`` times the gradient.

    .. math::
        m_t = \beta_1(t) m_{t-1} + (1-\beta_1(t)) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        c_t = \sqrt{1-\beta_2^t} \\
        p_t = p_{t-1} - \eta \frac{m_t + \alpha g_t}{c_t (\sqrt{v_t} + c_t \epsilon)}

    With ``beta1_warmup`` the momentum :math:`\beta_1(t)` grows from ``min_beta1`` to ``betas[0]`` linearly
    in half-life space. Decoupled weight decay by default.

    Paper: Morwani et al., "Connections between Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD
    Variants", arXiv:2502.02431, 2025.

    Reference: ``pytorch_optimizer.SimplifiedAdEMAMix`` (parity-checked). Differences: the reference's
    per-parameter ``den_sum`` (:math:`c_t^2`) is one global scalar here; its ``num_sum`` is never used and is
    not kept.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-4``.
        betas: ``(beta1, beta2)``, decay rates of the momentum and of the second moment, each in [0, 1).
            Default ``(0.99, 0.95)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        alpha: Weight :math:`\alpha` of the current gradient added to the momentum (>= 0). Default ``0.0``.
        beta1_warmup: Number of warm-up steps of :math:`\beta_1(t)`; ``None`` (or 0) disables the warm-up.
            Default ``None``.
        min_beta1: Starting :math:`\beta_1` of the warm-up (>= 0). Default ``0.9``.
        eps: Term added to the denominator, scaled by :math:`c_t` (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "simplifiedademamix"
    family = "adam"
    reference = "pytorch_optimizer.SimplifiedAdEMAMix"

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        betas: Sequence[float] = (0.99, 0.95),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        alpha: Tunable = 0.0,
        beta1_warmup: int | None = None,
        min_beta1: Tunable = 0.9,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("alpha", alpha, 0.0)
        self._hyper("min_beta1", min_beta1, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.beta1_warmup = beta1_warmup
        self.globals["den_sum"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    @staticmethod
    def warmup_beta1(step: mx.array, beta_end, beta_start, warmup: int) -> mx.array:
        """``linear_hl_warmup_scheduler``: interpolate the half-lives of ``beta_start`` and ``beta_end``."""

        def half_life(beta):
            return mx.log(mx.array(0.5, mx.float32)) / mx.log(beta + 1e-8) - 1.0

        a = step / float(warmup)
        t = (1.0 - a) * half_life(beta_start) + a * half_life(beta_end)
        return mx.where(step < warmup, mx.power(mx.array(0.5, mx.float32), 1.0 / (t + 1.0)), beta_end)

    def step_scalars(self, hp) -> None:
        den_sum = hp.beta2 * self.globals["den_sum"] + hp.one_minus_beta2
        self.globals["den_sum"] = den_sum
        hp.den_sqrt = mx.sqrt(den_sum)
        hp.beta1_t = hp.beta1
        if self.beta1_warmup:
            hp.beta1_t = self.warmup_beta1(hp.step, hp.beta1, hp.min_beta1, self.beta1_warmup)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, 1 - hp.beta1_t)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = mx.sqrt(v) + hp.den_sqrt * hp.eps
        return p - hp.lr * ((m + hp.alpha * g) / denom / hp.den_sqrt)
