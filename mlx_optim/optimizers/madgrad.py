"""MADGRAD: momentumized, adaptive, dual-averaged gradient descent."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def madgrad_zero(eps) -> mx.array:
    """The ``grad_sum_sq`` value whose :func:`madgrad_rms` is zero: 0 when ``eps == 0``, else NaN (none is)."""
    return mx.where(eps == 0, 0.0, mx.nan)


def madgrad_rms(grad_sum_sq: mx.array, eps, zero) -> mx.array:
    """MADGRAD's cube-root denominator; zero entries (possible only with ``eps=0``) become inactive (inf).

    ``zero`` is :func:`madgrad_zero` of ``eps``: ``grad_sum_sq == zero`` is ``r == 0`` exactly (``r`` is at
    least ``eps`` unless NaN, and the cube root of a non-negative float32 is 0 only at 0), one operation
    shallower, which lets ``mx.compile`` fuse the update into one kernel (mlx_optim.fusion).
    """
    r = mx.power(grad_sum_sq, 1.0 / 3.0) + eps
    return mx.where(grad_sum_sq == zero, mx.inf, r)


@register
class MADGRAD(Optimizer):
    r"""MADGRAD: momentumized, adaptive, dual-averaged gradient descent.

    Dual averaging with a cube-root AdaGrad denominator, anchored at the initial parameters :math:`x_0`
    (kept in ``state["x0"]``), plus momentum by averaging:

    .. math::
        \lambda_t = (\eta+\epsilon)\sqrt{t},\quad s_t = s_{t-1} + \lambda_t g_t,\quad
        \nu_t = \nu_{t-1} + \lambda_t g_t^2 \\
        z_t = x_0 - \frac{s_t}{\nu_t^{1/3} + \epsilon},\quad p_t = \mu\, p_{t-1} + (1-\mu) z_t

    With ``momentum=0`` there is no ``x0`` state: :math:`x_0` is recovered from the current iterate as the
    reference does. ``weight_decouple`` subtracts :math:`(\eta+\epsilon)\lambda p_{t-1}` after the step,
    else L2 is added to the gradient.

    Paper: Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized, Adaptive, Dual Averaged
    Gradient Method for Stochastic Optimization", JMLR 2022, arXiv:2101.11075.

    Reference: ``pytorch_optimizer.MADGRAD`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Averaging factor :math:`\mu` toward the previous iterate, in [0, 1); 0 disables momentum
            (and the ``x0`` state). Default ``0.9``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled weight decay (subtract :math:`(\eta+\epsilon)\lambda p` after the step)
            instead of adding :math:`\lambda p` to the gradient. Default ``False``.
        eps: Added to the denominator and to the learning rate in :math:`\lambda_t` (>= 0). Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "madgrad"
    family = "adaptive"
    reference = "pytorch_optimizer.MADGRAD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "grad_sum_sq", "s")
        if self.use_momentum:
            state["x0"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def step_scalars(self, hp) -> None:
        hp.lr_eps = mx.where(hp.lr != 0, hp.lr + hp.eps, 0.0)
        hp.lamb = hp.lr_eps * mx.sqrt(hp.step)
        hp.rms_zero = madgrad_zero(hp.eps)
        hp.c_mom = hp.one_minus_momentum
        hp.wd_step = hp.lr_eps * hp.weight_decay

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if not self.weight_decouple:
            p, g = self.apply_weight_decay(p, g, decouple=False)
        if self.use_momentum:
            x0 = state["x0"]
        else:
            x0 = p + state["s"] / madgrad_rms(state["grad_sum_sq"], hp.eps, hp.rms_zero)
        grad_sum_sq = state["grad_sum_sq"] + hp.lamb * mx.square(g)
        s = state["s"] + hp.lamb * g
        state["grad_sum_sq"], state["s"] = grad_sum_sq, s
        z = x0 - s / madgrad_rms(grad_sum_sq, hp.eps, hp.rms_zero)
        new = F.lerp(p, z, hp.c_mom) if self.use_momentum else z
        if self.weight_decouple and self.decays():
            new = new - hp.wd_step * p
        return new
