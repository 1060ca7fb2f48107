"""diffGrad (Dubey et al., 2019): Adam with a friction coefficient from the gradient change."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class DiffGrad(Optimizer):
    r"""DiffGrad: Adam whose first moment is damped per coordinate by a friction coefficient from the gradient change.

    The friction coefficient is :math:`\xi_t = \sigma(|g_{t-1} - g_t|)` (sigmoid of the gradient change):

    .. math::
        p_t = p_{t-1} - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
              \frac{\xi_t\, m_t}{\sqrt{v_t + 10^{-15}} + \epsilon}

    with :math:`m_t`, :math:`v_t` Adam's moment EMAs. Decoupled weight decay by default.

    Paper: "diffGrad: An Optimization Method for Convolutional Neural Networks" (Dubey et al., 2019).
    Reference: ``pytorch_optimizer.DiffGrad``, same keywords and defaults; its ``adam_debias``, ``adanorm`` and
    ``adanorm_r`` options (``**kwargs``) are keyword-only arguments here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        rectify: Use RAdam's rectified step size. Default ``False``.
        n_sma_threshold (int): With ``rectify``, the SMA length below which the step is not adaptive. Default
            ``5``.
        degenerated_to_sgd: With ``rectify``, take a momentum-SGD step (instead of none) while the SMA length
            is below the threshold. Default ``True``.
        ams_bound: Use the running maximum of :math:`v_t` (AMSGrad). Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to the first moment up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "diffgrad"
    family = "adam"
    reference = "pytorch_optimizer.DiffGrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = True,
        ams_bound: bool = False,
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
        self._rectify_options(n_sma_threshold, degenerated_to_sgd, rectify)
        self.ams_bound = ams_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        ams = "max_exp_avg_sq" if self.ams_bound else None
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", "previous_grad", ams=ams)

    def step_scalars(self, hp) -> None:
        lr = hp.lr if self.rectify else hp.lr * mx.sqrt(hp.bias_correction("beta2"))
        hp.step_size = self.adam_step_size(hp, lr, self.rectify)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], self.adanorm_grad(g, state), hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = F.ams_bound_denom(self.apply_amsgrad(state, v) if self.ams_bound else v, hp.eps)
        dfc = mx.sigmoid(mx.abs(state["previous_grad"] - g)) * m
        state["previous_grad"] = g
        adaptive = p - hp.step_size * dfc / denom
        if not self.rectify:
            return adaptive
        return mx.where(hp.rectified, adaptive, mx.where(hp.step_size > 0, p - hp.step_size * m, p))
