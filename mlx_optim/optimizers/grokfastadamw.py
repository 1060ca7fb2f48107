"""GrokFast-AdamW (Lee et al., 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients")."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class GrokFastAdamW(Optimizer):
    r"""GrokFast-AdamW (Lee et al., 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients").

    pytorch_optimizer semantics: AdamW on the gradient plus ``grokfast_lamb`` times
    its slow EMA :math:`\mu_t = \alpha\mu_{t-1} + (1-\alpha) g_t` (:math:`\mu_0 = g_1`,
    active after ``grokfast_after_step`` steps):

    .. math::
        \tilde g_t = g_t + \lambda_g \mu_t,\quad
        p_t = p_{t-1} - \frac{\eta'}{1-\beta_1^t}\frac{m_t}{\max(\sqrt{v_t/(1-\beta_2^t)}, \epsilon)}

    with :math:`\eta' = \eta / (1 + \lambda_g)` when ``normalize_lr`` (also used by
    the weight decay, as in the reference). Note the denominator clamps at ``eps``
    instead of adding it.
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
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
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
