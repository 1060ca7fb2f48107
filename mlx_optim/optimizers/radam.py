"""RAdam: rectified Adam."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class RAdam(Optimizer):
    r"""RAdam: Adam with a rectified step size that corrects the variance of the adaptive learning rate early on.

    With :math:`\rho_\infty = 2/(1-\beta_2) - 1` and the length of the approximated simple moving average
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

    .. math::
        r_t = \sqrt{(1-\beta_2^t)\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}},\quad
        p_t = p_{t-1} - \frac{\eta\, r_t}{1-\beta_1^t}\frac{m_t}{\sqrt{v_t} + \epsilon}

    While :math:`\rho_t` is below ``n_sma_threshold`` the update is skipped (or, with ``degenerated_to_sgd``,
    is momentum SGD, :math:`p_t = p_{t-1} - \eta m_t / (1-\beta_1^t)`). Weight decay is decoupled by default
    (applied only on steps that move). ``adam_debias`` drops the first-moment correction from the step size;
    ``adanorm`` rescales the gradient fed to the first moment (AdaNorm).

    Paper: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020,
    arXiv:1908.03265.

    Reference: ``pytorch_optimizer.RAdam`` (parity-checked), including its ``adam_debias`` / ``adanorm``
    options (keyword-only here). Reference quirk kept: with ``weight_decouple=False`` it applies no weight
    decay at all.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``; ``False`` applies
            no decay (reference quirk above). Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        n_sma_threshold: The :math:`\rho_t` from which the rectified adaptive step is used. Default ``5``.
        degenerated_to_sgd: Take momentum SGD steps before the threshold instead of skipping them.
            Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step size by :math:`1-\beta_1^t` (keyword-only). Default ``False``.
        adanorm: AdaNorm: rescale the gradient entering the first moment up to the running average of its
            norm (keyword-only). Default ``False``.
        adanorm_r: Decay rate of AdaNorm's running norm average, in [0, 1] (keyword-only). Default ``0.95``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "radam"
    family = "adam"
    reference = "pytorch_optimizer.RAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r, adam_debias)
        self._rectify_options(n_sma_threshold, degenerated_to_sgd)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr)
        hp.active = hp.rectified | (hp.step_size > 0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.weight_decouple:
            p = mx.where(hp.active, self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)[0], p)
        m = hp.beta1 * state["exp_avg"] + hp.one_minus_beta1 * self.adanorm_grad(g, state)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        adaptive = m / (mx.sqrt(v) + hp.eps)
        return p - hp.step_size * F.rectified_direction(hp.rectified, hp.step_size, adaptive, m)
