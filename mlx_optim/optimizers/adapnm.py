"""AdaPNM (Xie et al., 2021): Adam with positive-negative momentum."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, betas3
from mlx_optim.registry import register


@register
class AdaPNM(Optimizer):
    r"""AdaPNM: Adam with positive-negative momentum, two momenta updated on alternate steps and combined.

    Two momenta are updated on alternate steps (each with :math:`\beta_1^2`); the
    update combines the fresh one :math:`m_t` and the stale one :math:`n_t`:

    .. math::
        m_t = \beta_1^2 m_{t-2} + (1-\beta_1^2) g_t,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}
              \frac{\big((1+\beta_3) m_t - \beta_3 n_t\big)/\sqrt{(1+\beta_3)^2+\beta_3^2}}
                   {(\sqrt{\max_{s\le t} v_s}+\epsilon)/\sqrt{1-\beta_2^t}}

    with :math:`v_t` Adam's second moment. AMSGrad (``ams_bound``) is on by default.

    Paper: "Positive-Negative Momentum: Manipulating Stochastic Gradient Noise to Improve Generalization"
    (Xie et al.), ICML 2021. Reference: ``pytorch_optimizer.AdaPNM``, same keywords and defaults; its
    ``adanorm``, ``adanorm_r`` and ``adam_debias`` options (``**kwargs``) are keyword-only arguments here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`: momentum and second-moment decay rates (each in [0, 1)) and
            the positive-negative mixing coefficient :math:`\beta_3` (in [0, 1]). Default ``(0.9, 0.999, 1.0)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        ams_bound: Use the running maximum of :math:`v_t` (AMSGrad); ``False`` uses :math:`v_t`. Default
            ``True``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to the first moment up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adapnm"
    family = "adam"
    reference = "pytorch_optimizer.AdaPNM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999, 1.0),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas3(self, betas)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r, adam_debias)
        self.ams_bound = ams_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        ams = "max_exp_avg_sq" if self.ams_bound else None
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", "neg_exp_avg", ams=ams)

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr, rectify=False)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.beta3_1 = 1 + hp.beta3
        hp.noise_norm = mx.sqrt(mx.square(hp.beta3_1) + mx.square(hp.beta3))
        hp.odd = mx.remainder(hp.step, 2) == 1  # odd steps update exp_avg, even steps neg_exp_avg
        hp.beta1_sq = mx.square(hp.beta1)
        hp.c1, hp.c2 = 1 - hp.beta1_sq, hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        a, b = state["exp_avg"], state["neg_exp_avg"]
        pos = hp.beta1_sq * mx.where(hp.odd, a, b) + hp.c1 * self.adanorm_grad(g, state)  # F.ema with beta1 ** 2
        a, b = mx.where(hp.odd, pos, a), mx.where(hp.odd, b, pos)
        state["exp_avg"], state["neg_exp_avg"] = a, b
        # the stale momentum read from the new state (odd steps: b, even steps: a, as from the old one), so that
        # every state output feeds the update and mx.compile fuses it into one kernel (mlx_optim.fusion)
        neg = mx.where(hp.odd, b, a)
        v = hp.beta2 * state["exp_avg_sq"] + hp.c2 * mx.square(g)
        state["exp_avg_sq"] = v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        pn_momentum = (hp.beta3_1 * pos - hp.beta3 * neg) / hp.noise_norm
        return p - hp.step_size * pn_momentum / (F.ams_bound_denom(v, hp.eps) / hp.bc2_sqrt)
