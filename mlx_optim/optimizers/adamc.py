"""AdamC (Defazio et al., 2025): Adam with weight decay corrected for normalized layers."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdamC(Optimizer):
    r"""AdamC: Adam whose decoupled weight decay is corrected for normalized layers.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1}(1 - \lambda\,\eta_{wd}) - \eta\,\frac{m_t/(1-\beta_1^t)}{(\sqrt{v_t + 10^{-15}} + \epsilon)
        / \sqrt{1-\beta_2^t}}

    with :math:`\eta_{wd} = \eta` normally and :math:`\eta^2/\eta_{max}` when
    ``normalized`` (for LayerNorm/BatchNorm-like parameters; :math:`\eta_{max}` is the
    constructor learning rate, a schedule's value at step 0). ``ams_bound`` uses the running maximum of
    :math:`v_t`.

    Paper: "Why Gradients Rapidly Increase Near the End of Training" (Defazio et al., 2025), arXiv:2506.02285.
    Reference: ``pytorch_optimizer.AdamC``, same keywords and defaults. The reference sets ``normalized`` per
    parameter group; here it is a keyword-only flag for the whole optimizer (build a second optimizer for the
    normalization layers).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay instead of an L2 penalty added to the gradient. Default
            ``True``.
        fixed_decay: With decoupled decay, do not scale it by :math:`\eta_{wd}`. Default ``False``.
        ams_bound: Use the running maximum of :math:`v_t` (AMSGrad). Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        normalized: The parameters are normalization-layer weights: decay at :math:`\eta^2/\eta_{max}`. Default
            ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adamc"
    family = "adam"
    reference = "pytorch_optimizer.AdamC"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        normalized: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.ams_bound, self.normalized = ams_bound, normalized
        lr0 = learning_rate(mx.array(0)) if callable(learning_rate) else learning_rate
        self.globals["max_lr"] = mx.array(lr0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", ams="max_exp_avg_sq" if self.ams_bound else None)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.wd_lr = hp.lr * hp.lr / self.globals["max_lr"] if self.normalized else hp.lr

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g, lr=hp.wd_lr)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        v_hat = self.apply_amsgrad(state, v) if self.ams_bound else v
        denom = (mx.sqrt(v_hat + 1e-15) + hp.eps) / hp.bc2_sqrt
        return p - hp.lr * (m / hp.bc1) / denom
