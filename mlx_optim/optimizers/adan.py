"""Adan (Xie et al., 2022): adaptive Nesterov momentum."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Adan(Optimizer):
    r"""Adan: adaptive Nesterov momentum, with moving averages of the gradient, its difference and their square.

    With :math:`\Delta_t = g_t - g_{t-1}` (zero on the first step):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad d_t = \beta_2 d_{t-1} + (1-\beta_2)\Delta_t,\\
        n_t = \beta_3 n_{t-1} + (1-\beta_3)(g_t + \beta_2\Delta_t)^2,\quad
        u_t = \frac{m_t/(1-\beta_1^t) + \beta_2 d_t/(1-\beta_2^t)}{\sqrt{n_t/(1-\beta_3^t)} + \epsilon},\\
        p_t = \frac{p_{t-1} - \eta u_t}{1 + \eta\lambda} \quad(\text{or } p_{t-1}(1-\eta\lambda) - \eta u_t
        \text{ with } \texttt{weight\_decouple})

    ``max_grad_norm > 0`` scales all gradients by ``min(1, max_grad_norm / (||g||_global + eps))``
    (global reduction in :meth:`prepare`). ``use_gc`` centralizes the gradient and
    ``adanorm`` rescales the one fed to :math:`m_t`.

    Paper: "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models" (Xie et al., 2022),
    arXiv:2208.06677. Reference: ``pytorch_optimizer.Adan``, same keywords and defaults; its ``use_gc``,
    ``adanorm`` and ``adanorm_r`` options (``**kwargs``) are keyword-only arguments here. Reference quirk
    kept: the stored "previous gradient" before the first step is the negated raw gradient (before
    ``maximize`` and centralization), so :math:`\Delta_1` is not zero with ``maximize`` or ``use_gc``.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`, each in [0, 1): decay rates of the gradient, the gradient
            difference and the squared corrected gradient. Default ``(0.98, 0.92, 0.99)``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled decay :math:`p(1-\eta\lambda)` before the step instead of the proximal
            division by :math:`1+\eta\lambda` after it. Default ``False``.
        max_grad_norm: Clip the gradients to this global norm (>= 0); 0 disables clipping. Default ``0.0``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        use_gc: Gradient centralization: subtract from each gradient with more than one dimension its mean over
            all axes but the first. Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to the first moment up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adan"
    family = "adam"
    reference = "pytorch_optimizer.Adan"
    shared_tunables = ("max_grad_norm",)  # one global gradient-norm clip
    # the chain to the first-step selection of the previous gradient is more than 11 operations deep from p':
    ops_per_leaf = 2  # mx.compile computes it (and the new previous_grad) in a kernel of its own

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.98, 0.92, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        max_grad_norm: Tunable = 0.0,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        use_gc: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 3)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("max_grad_norm", max_grad_norm, 0.0)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r)
        self.weight_decouple, self.use_gc = weight_decouple, use_gc

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", "exp_avg_diff", "previous_grad")

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.diff_step_size = hp.lr * hp.beta2 / hp.bias_correction("beta2")
        hp.bc3_sqrt = mx.sqrt(F.bias_correction(hp.beta3, hp.step))
        hp.c3 = 1 - hp.beta3
        if "weight_decay" not in self._zero:
            hp.lr_wd = hp.lr * hp.weight_decay
            hp.shrink, hp.prox = 1 - hp.lr_wd, 1 + hp.lr_wd

    def prepare(self, gradients, parameters) -> None:
        hp = self.hp
        hp.clip = 1.0
        if "max_grad_norm" not in self._zero:
            hp.clip = mx.minimum(hp.max_grad_norm / (F.global_norm(gradients) + hp.eps), 1.0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        clipped = not isinstance(hp.clip, float)  # hp.clip is 1.0 (a no-op) without max_grad_norm
        raw = -g if self.maximize else g
        g = g * hp.clip if clipped else g
        if self.use_gc:
            g = self.apply_gc(g)
        neg = -g  # the new previous_grad
        if self.use_gc:
            first = -hp.clip * raw
        else:  # -clip * raw is exactly -g (g with maximize, where raw = -g): the selection then also computes
            first = g if self.maximize else neg  # the new state, in one kernel (mlx_optim.fusion)
        prev = mx.where(hp.first, first, state["previous_grad"])
        diff = prev + g
        m = F.lerp(state["exp_avg"], self.adanorm_grad(g, state), hp.one_minus_beta1)
        d = F.lerp(state["exp_avg_diff"], diff, hp.one_minus_beta2)
        n = hp.beta3 * state["exp_avg_sq"] + hp.c3 * mx.square(hp.beta2 * diff + g)
        state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"] = m, d, n
        state["previous_grad"] = neg
        denom = mx.sqrt(n) / hp.bc3_sqrt + hp.eps
        decay = self.decays()
        if decay and self.weight_decouple:
            p = p * hp.shrink
        p = p - hp.step_size * m / denom - hp.diff_step_size * d / denom
        if decay and not self.weight_decouple:
            p = p / hp.prox
        return p
