"""RaLars: RAdam with a LARS trust ratio (holocron)."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class RaLars(Optimizer):
    r"""RaLars: rectified Adam (RAdam) with a LARS layer-wise trust ratio, as in holocron.

    Follows holocron's code (``holocron.optim.RaLars``):

    .. math::
        \hat m = \frac{m_t}{1-\beta_1^t},\ \hat v = \frac{v_t}{1-\beta_2^t},\quad
        u_t = \begin{cases} r_t \hat m / (\sqrt{\hat v} + \epsilon) & \rho_t > 4 \\
              \hat m / (\sqrt{\hat v} + \epsilon) & \text{else, with force\_adaptive\_momentum} \\
              \hat m & \text{else} \end{cases} \;+\; \lambda p \\
        p_t = p_{t-1} - \eta \frac{\operatorname{clip}(\lVert p\rVert, \text{scale\_clip})}{\lVert u_t\rVert} u_t

    (ratio 1 when either norm is 0). :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`,
    :math:`r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty / ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}`. Note the
    rectification threshold is :math:`\rho_t > 4` (pytorch_optimizer's RAdam uses 5) and :math:`r_t` has no
    :math:`\sqrt{1-\beta_2^t}` factor (the second moment is bias-corrected instead).

    Paper: no paper of its own; RAdam is Liu et al., ICLR 2020, arXiv:1908.03265, and LARS is You et al.,
    arXiv:1708.03888.

    Reference: ``holocron.optim.RaLars``, through a torch transcription (parity-checked). ``weight_decay`` is
    not range-checked by holocron and is not here either; there is no ``maximize`` (holocron has none).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        weight_decay: Weight decay :math:`\lambda`, added to the update before the trust ratio.
            Default ``0.0``.
        force_adaptive_momentum: Before the rectification threshold, use the unrectified adaptive step
            instead of the bias-corrected momentum. Default ``False``.
        scale_clip: ``(low, high)`` bounds of the parameter norm in the trust ratio; ``None`` means
            ``(0, 10)``. Default ``None``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "ralars"
    family = "adam"
    reference = "holocron.optim.RaLars (torch transcription)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        force_adaptive_momentum: bool = False,
        scale_clip: tuple[float, float] | None = None,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._hyper("eps", eps, 0.0)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay)
        self.force_adaptive_momentum = force_adaptive_momentum
        scale_clip = (0.0, 10.0) if scale_clip is None else tuple(float(c) for c in scale_clip)
        if len(scale_clip) != 2:
            raise ValueError(f"RaLars: scale_clip={scale_clip!r} must be a (low, high) pair")
        self.scale_clip = scale_clip

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")
        sma_inf = 2 / hp.one_minus_beta2 - 1
        sma_t = sma_inf - 2 * hp.step * (1 - hp.bc2) / hp.bc2
        hp.rectified = sma_t > 4
        safe = mx.maximum(sma_t, 4.0)
        hp.r_t = mx.sqrt((safe - 4) * (safe - 2) * sma_inf / ((sma_inf - 4) * (sma_inf - 2) * safe))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = hp.ema(state["exp_avg"], g, "beta1")
        v = hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        m_hat = m / hp.bc1
        adaptive = m_hat / (mx.sqrt(v / hp.bc2) + hp.eps)
        update = mx.where(hp.rectified, hp.r_t * adaptive, adaptive if self.force_adaptive_momentum else m_hat)
        if self.decays():
            update = update + hp.weight_decay * p
        phi = mx.clip(F.norm(p), *self.scale_clip)
        u_norm = F.norm(update)
        local_lr = mx.where((phi == 0) | (u_norm == 0), 1.0, phi / mx.where(u_norm == 0, 1.0, u_norm))
        return p - hp.lr * local_lr * update
