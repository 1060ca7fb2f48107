"""GrokFast-AdamW: AdamW on gradients amplified by their slow exponential moving average."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class GrokFastAdamW(Optimizer):
    r"""GrokFast-AdamW: AdamW on gradients amplified by their slow exponential moving average (Grokfast).

    Grokfast low-pass filters the gradient with a slow EMA :math:`\mu_t = \alpha\mu_{t-1} + (1-\alpha) g_t`
    (:math:`\mu` starts at the first gradient) and adds ``grokfast_lamb`` times it to the gradient, from step
    ``grokfast_after_step + 1`` on; AdamW then runs on the amplified gradient:

    .. math::
        \tilde g_t = g_t + \lambda_g \mu_t,\quad
        p_t = p_{t-1} - \frac{\eta'}{1-\beta_1^t}\frac{m_t}{\max(\sqrt{v_t/(1-\beta_2^t)}, \epsilon)}

    with :math:`m_t, v_t` the EMAs of :math:`\tilde g_t` and :math:`\tilde g_t^2`, and
    :math:`\eta' = \eta / (1 + \lambda_g)` when ``normalize_lr`` (also used by the weight decay, as in the
    reference). The denominator clamps at ``eps`` instead of adding it, as the reference does.

    Paper: Lee et al., "Grokfast: Accelerated Grokking by Amplifying Slow Gradients", arXiv:2405.20233, 2024.

    Reference: ``pytorch_optimizer.GrokFastAdamW`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-4``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.99)``.
        grokfast: Apply the Grokfast filter; ``False`` (or ``grokfast_lamb=0``) gives plain AdamW with the
            clamped denominator, and turns ``normalize_lr`` off. Default ``True``.
        grokfast_alpha: Decay rate :math:`\alpha` of the slow gradient EMA, in [0, 1). Default ``0.98``.
        grokfast_lamb: Amplification factor :math:`\lambda_g` of the slow EMA (>= 0). Default ``2.0``.
        grokfast_after_step: Number of initial steps without amplification (plain AdamW); the filter applies
            from step ``grokfast_after_step + 1``. Default ``0``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        normalize_lr: Divide the learning rate by ``1 + grokfast_lamb`` while Grokfast is on. Default ``True``.
        eps: Lower bound of the denominator (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "grokfastadamw"
    family = "adam"
    reference = "pytorch_optimizer.GrokFastAdamW"
    # the new slow EMA lies more than 11 operations deep below p' (through the amplified gradient and the second
    ops_per_leaf = 2  # moment): mx.compile computes it in a kernel of its own

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        betas: Sequence[float] = (0.9, 0.99),
        grokfast: bool = True,
        grokfast_alpha: Tunable = 0.98,
        grokfast_lamb: Tunable = 2.0,
        grokfast_after_step: int = 0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        normalize_lr: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("grokfast_alpha", grokfast_alpha, 0.0, 1.0, "[)")
        self._hyper("grokfast_lamb", grokfast_lamb)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.grokfast = grokfast and (callable(grokfast_lamb) or grokfast_lamb > 0.0)
        self.normalize_lr = grokfast and normalize_lr
        self.grokfast_after_step = grokfast_after_step

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
        if self.grokfast:
            state["grok_exp_avg"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        if self.normalize_lr:
            hp.lr = hp.lr / (1.0 + hp.grokfast_lamb)
        hp.first = hp.step == 1
        hp.grok_on = hp.step > self.grokfast_after_step
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        if self.grokfast:
            hp.grok_weight = hp.one_minus_grokfast_alpha

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g_raw = g
        p, g = self.decay_weights(p, g)
        if self.grokfast:
            mu0 = mx.where(hp.first, g_raw, state["grok_exp_avg"])  # initialised to the first gradient
            mu = F.lerp(mu0, g, hp.grok_weight)
            # where grok_on the new state is mu: the gradient reads it from the new state, which then feeds the
            # update (one kernel fewer under mx.compile, mlx_optim.fusion)
            state["grok_exp_avg"] = mu = mx.where(hp.grok_on, mu, mu0)
            g = mx.where(hp.grok_on, g + hp.grokfast_lamb * mu, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / mx.maximum(mx.sqrt(v) / hp.bc2_sqrt, hp.eps)
