"""AdEMAMix (Pagliardini et al., 2024): Adam with a mixture of a fast and a slow EMA."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdEMAMix(Optimizer):
    r"""AdEMAMix: Adam whose numerator mixes the usual fast EMA with a slow EMA of the gradient.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        s_t = \beta_3(t) s_{t-1} + (1-\beta_3(t)) g_t \\
        p_t = p_{t-1} - \eta \frac{m_t/(1-\beta_1^t) + \alpha(t)\, s_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    With ``t_alpha_beta3`` the mixing weight :math:`\alpha(t)` warms up linearly
    and :math:`\beta_3(t)` in half-life space over that many steps.

    Paper: "The AdEMAMix Optimizer: Better, Faster, Older" (Pagliardini et al., 2024), arXiv:2409.03137.
    Reference: ``pytorch_optimizer.AdEMAMix``, same keywords and defaults; the options it reads from
    ``**kwargs``, ``cautious`` and ``stable_adamw``, are keyword-only arguments here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`: decay rates of the fast EMA and the squared gradient (each
            in [0, 1)) and of the slow EMA (in [0, 1]; 1 is allowed). Default ``(0.9, 0.999, 0.9999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        alpha: Weight :math:`\alpha` (>= 0) of the slow EMA. Default ``5.0``.
        t_alpha_beta3 (float | None): Number of steps (>= 0) over which :math:`\alpha` and :math:`\beta_3` warm
            up; ``None``: no warmup. Default ``None``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        cautious: Zero the fast momentum's entries whose sign disagrees with the gradient's (the rest rescaled
            to keep its size). Default ``False``.
        stable_adamw: Divide the update by StableAdamW's :math:`\max(1, \sqrt{\operatorname{mean}(g^2/v)})`.
            Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "ademamix"
    family = "adam"
    reference = "pytorch_optimizer.AdEMAMix"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999, 0.9999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        alpha: Tunable = 5.0,
        t_alpha_beta3: float | None = None,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        cautious: bool = False,
        stable_adamw: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 3:
            raise ValueError(f"AdEMAMix: betas={betas!r} must have 3 values")
        self._betas(betas[:2], 2)
        self._hyper("beta3", betas[2], 0.0, 1.0, "[]")
        self._hyper("alpha", alpha, 0.0)
        if t_alpha_beta3 is not None:
            self._check("t_alpha_beta3", t_alpha_beta3, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.t_alpha_beta3 = t_alpha_beta3
        self.cautious, self.stable_adamw = cautious, stable_adamw

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", "exp_avg_slow")

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.alpha_t, hp.beta3_t = F.ademamix_schedules(hp.step, self.t_alpha_beta3, hp.alpha, hp.beta1, hp.beta3)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        slow = F.lerp(state["exp_avg_slow"], g, 1 - hp.beta3_t)
        state["exp_avg"], state["exp_avg_sq"], state["exp_avg_slow"] = m, v, slow
        denom = mx.sqrt(v) / hp.bc2_sqrt + hp.eps
        fast = self.apply_cautious(m, g) if self.cautious else m
        update = (fast / hp.bc1 + hp.alpha_t * slow) / denom
        if self.stable_adamw:
            update = update / F.stable_adamw_rms(g, v)
        return p - hp.lr * update
