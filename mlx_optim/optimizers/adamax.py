"""AdaMax (Kingma & Ba, 2015): Adam with the infinity norm."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaMax(Optimizer):
    r"""AdaMax: Adam with an exponentially weighted infinity norm in place of the second moment.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon),\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{u_t}

    Paper: "Adam: A Method for Stochastic Optimization" (Kingma & Ba), ICLR 2015, section 7.1. Reference:
    ``pytorch_optimizer.AdaMax``, same keywords and defaults (unlike ``torch.optim.Adamax`` it offers
    decoupled and fixed weight decay); its ``adam_debias``, ``adanorm`` and ``adanorm_r`` options
    (``**kwargs``) are keyword-only arguments here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the gradient mean and of the
            infinity norm. Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to :math:`|g_t|`. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to :math:`m_t` up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adamax"
    family = "adam"
    reference = "pytorch_optimizer.AdaMax"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
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

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_inf")

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr, rectify=False)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = hp.beta1 * state["exp_avg"] + hp.one_minus_beta1 * self.adanorm_grad(g, state)
        u = mx.maximum(hp.beta2 * state["exp_inf"], mx.abs(g) + hp.eps)
        state["exp_avg"], state["exp_inf"] = m, u
        return p - hp.step_size * m / u
