"""AdaBelief (Zhuang et al., 2020): Adam whose step adapts to the *belief* in the gradient."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaBelief(Optimizer):
    r"""AdaBelief: Adam whose step adapts to the *belief* in the gradient (its deviation from the momentum).

    The second moment tracks the squared prediction error of the gradient instead of
    the squared gradient:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{s_t}/\sqrt{1-\beta_2^t} + \epsilon}

    With ``rectify`` the step is RAdam's rectified one (momentum SGD, or no step
    unless ``degenerated_to_sgd``, while the SMA length is below ``n_sma_threshold``).
    ``ams_bound`` uses the running maximum of :math:`s_t`; ``adanorm`` rescales the
    gradient fed to :math:`m_t`; ``adam_debias`` drops the first-moment correction.
    Weight decay is decoupled by default.

    Paper: "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients" (Zhuang et al.),
    NeurIPS 2020. Reference: ``pytorch_optimizer.AdaBelief``, same keywords and defaults; its ``**kwargs``
    options ``adanorm``, ``adanorm_r`` and ``adam_debias`` are explicit keyword-only arguments here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the gradient mean and of the
            squared prediction error. Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate: ``p <- p (1 - wd)``. Default
            ``False``.
        rectify: Take RAdam's rectified step. Default ``False``.
        n_sma_threshold: With ``rectify``, the SMA length below which the step is not adaptive. Default ``5``.
        degenerated_to_sgd: With ``rectify``, take a momentum-SGD step (instead of none) while the SMA length
            is below the threshold. Default ``True``.
        ams_bound: Divide by the running maximum of :math:`s_t` (AMSGrad). Default ``False``.
        eps: :math:`\epsilon` (>= 0), added to :math:`s_t` and to the denominator. Default ``1e-16``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to :math:`m_t` up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        adam_debias: Do not divide the step by the first moment's bias correction :math:`1-\beta_1^t`.
            Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adabelief"
    family = "adam"
    reference = "pytorch_optimizer.AdaBelief"
    # m is reached last through p' <- denominator <- s <- (g - m), 10 operations deep: mx.compile cuts m's two
    # products off into kernels of their own
    ops_per_leaf = 3

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
        eps: Tunable = 1e-16,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        adam_debias: bool = False,
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
        ams = "max_exp_avg_var" if self.ams_bound else None
        self.zero_state(parameter, state, "exp_avg", "exp_avg_var", ams=ams)

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr, self.rectify)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.c1, hp.c2 = hp.one_minus_beta1, hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = hp.beta1 * state["exp_avg"] + hp.c1 * self.adanorm_grad(g, state)  # F.ema
        s = (hp.beta2 * state["exp_avg_var"] + hp.c2 * mx.square(g - m)) + hp.eps
        state["exp_avg"], state["exp_avg_var"] = m, s
        if self.ams_bound:
            s = self.apply_amsgrad(state, s, "max_exp_avg_var")
        if not self.rectify:
            return p - hp.step_size * m / (mx.sqrt(s) / hp.bc2_sqrt + hp.eps)
        adaptive = m / (mx.sqrt(s) + hp.eps)
        return p - hp.step_size * F.rectified_direction(hp.rectified, hp.step_size, adaptive, m)
