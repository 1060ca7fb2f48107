"""Aida (Zhang et al., 2024): AdaBelief-like variance of the residual after mutual projections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def aida_projection(g: mx.array, m: mx.array, k: int, xi: Any) -> mx.array:
    """``k`` alternating mutual projections of ``g`` and ``m``; returns the residual ``proj_m - proj_g``."""
    for _ in range(k):
        dot = mx.sum(g * m)
        g, m = g * (dot / (mx.sum(mx.square(g)) + xi)), m * (dot / (mx.sum(mx.square(m)) + xi))
    return m - g


@register
class Aida(Optimizer):
    r"""Aida: AdaBelief-like optimizer whose variance tracks the residual of mutual gradient-momentum projections.

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        r_t = \mathcal{P}^k_m - \mathcal{P}^k_g,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) r_t^2 + \epsilon \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{(\sqrt{v_t + 10^{-15}} + \epsilon)/\sqrt{1-\beta_2^t}}

    where :math:`\mathcal{P}^k` are ``k`` alternating projections of :math:`g_t`
    and :math:`m_t` onto each other (``xi`` guards the divisions).

    Paper: "A Novel Adaptive Optimizer Using Layer-wise Vector Projections" (Zhang et al., 2024),
    arXiv:2406.05074. Reference: ``pytorch_optimizer.Aida``, same keywords and defaults; its ``adam_debias``,
    ``adanorm`` and ``adanorm_r`` options (``**kwargs``) are keyword-only arguments here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the momentum and of the squared
            projection residual. Default ``(0.9, 0.999)``.
        k (int): Number (>= 0) of alternating projections per update. Default ``2``.
        xi: Term (>= 0) added to the projections' denominators. Default ``1e-20``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        rectify: Take RAdam's rectified step. Default ``False``.
        n_sma_threshold (int): With ``rectify``, the SMA length below which the step is not adaptive. Default
            ``5``.
        degenerated_to_sgd: With ``rectify``, take a momentum-SGD step (instead of none) while the SMA length
            is below the threshold. Default ``True``.
        ams_bound: Use the running maximum of :math:`v_t` (AMSGrad). Default ``False``.
        eps: :math:`\epsilon` (>= 0), added to :math:`v_t` and to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to the first moment up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "aida"
    family = "adam"
    reference = "pytorch_optimizer.Aida"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        k: int = 2,
        xi: Tunable = 1e-20,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
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
        adanorm_r: Tunable = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("k", k, 0.0)
        self._hyper("xi", xi, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r, adam_debias)
        self._rectify_options(n_sma_threshold, degenerated_to_sgd, rectify)
        self.k, self.ams_bound = int(k), ams_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        ams = "max_exp_avg_var" if self.ams_bound else None
        self.zero_state(parameter, state, "exp_avg", "exp_avg_var", ams=ams)

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr, self.rectify)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], self.adanorm_grad(g, state), hp.one_minus_beta1)
        residual = aida_projection(g, m, self.k, hp.xi)
        var = hp.beta2 * state["exp_avg_var"] + hp.one_minus_beta2 * mx.square(residual) + hp.eps
        state["exp_avg"], state["exp_avg_var"] = m, var
        var_hat = self.apply_amsgrad(state, var, "max_exp_avg_var") if self.ams_bound else var
        denom = mx.sqrt(var_hat + 1e-15) + hp.eps
        if not self.rectify:
            return p - hp.step_size * m / (denom / hp.bc2_sqrt)
        sgd = mx.where(hp.step_size > 0, p - hp.step_size * m, p)
        return mx.where(hp.rectified, p - hp.step_size * m / denom, sgd)
