"""Stable-SPAM: Adam with adaptive spike clipping, norm rescaling and momentum reset."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class StableSPAM(Optimizer):
    r"""Stable-SPAM: Adam with adaptive spike clipping, gradient-norm rescaling and periodic momentum reset.

    Per tensor: adaptive spike clipping against a running maximum :math:`\hat M_t` of :math:`\max|g|` (decay
    ``theta``), then the gradient is rescaled to the bias-corrected running norm
    :math:`\hat n_t = \hat m^{\|g\|}_t / (\sqrt{\hat v^{\|g\|}_t} + \epsilon)` (decays ``gamma1``,
    ``gamma2``) and fed to Adam:

    .. math::
        \tilde g = \begin{cases} g\,\hat M_t / \max|g| & |g| > \hat M_t \\ g \end{cases},\quad
        g' = \hat n_t\,\tilde g/\|\tilde g\|,\quad
        p_t = p_{t-1}(1-\eta\lambda) - \frac{\eta}{1-\beta_1^s}\frac{m_s}{\sqrt{v_s}/\sqrt{1-\beta_2^s} + \epsilon}

    The moments are zeroed and their step count :math:`s` restarts every ``update_proj_gap`` steps. With
    ``t_max`` both :math:`\beta_1` and ``gamma1`` are multiplied by a cosine factor decaying from 1 to
    ``eta_min`` (the closed form of the reference's ``CosineDecay`` as it is called). Tensors whose clipped
    gradient is zero are skipped (only decayed).

    Paper: Huang et al., "Stable-SPAM: How to Train in 4-Bit More Stably than 16-Bit Adam",
    arXiv:2502.17055, 2025.

    Reference: ``pytorch_optimizer.StableSPAM`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        gamma1: Decay rate of the EMA of the gradient norm; ``-1`` means ``betas[0]``. Default ``0.7``.
        gamma2: Decay rate of the EMA of the squared gradient norm. Default ``0.9``.
        theta: Decay rate of the running maximum of :math:`\max|g|`. Default ``0.999``.
        t_max: Length in steps of the cosine decay of :math:`\beta_1` and ``gamma1`` (>= 0); ``None``
            disables it. Default ``None``.
        eta_min: Final factor of that cosine decay. Default ``0.5``.
        weight_decay: Decoupled weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        update_proj_gap: Steps between momentum resets (> 0). Default ``1000``.
        eps: Term added to the denominators (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "stablespam"
    family = "adam"
    reference = "pytorch_optimizer.StableSPAM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        gamma1: Tunable = 0.7,
        gamma2: Tunable = 0.9,
        theta: Tunable = 0.999,
        t_max: int | None = None,
        eta_min: float = 0.5,
        weight_decay: Tunable = 0.0,
        update_proj_gap: int = 1000,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        betas = tuple(betas)
        self._hyper("gamma1", betas[0] if gamma1 == -1.0 else gamma1)
        self._hyper("gamma2", gamma2)
        self._hyper("theta", theta)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("update_proj_gap", update_proj_gap, 0, None, "(]")
        self._hyper("eps", eps, 0.0)
        if t_max is not None:
            self._check("t_max", t_max, 0)
        self.t_max, self.eta_min, self.update_proj_gap = t_max, float(eta_min), int(update_proj_gap)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
        state["m_norm_t"] = mx.zeros((), mx.float32)
        state["v_norm_t"] = mx.zeros((), mx.float32)
        state["m_max_t"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        t, gap = hp.step, self.update_proj_gap
        scale = 1.0
        if self.t_max is not None:
            big_t, lo = self.t_max + 1, self.eta_min
            cosine = lo + (1 - lo) * (1 + mx.cos(math.pi * (t + 1) / big_t)) / (1 + math.cos(math.pi / big_t))
            scale = mx.where(t >= self.t_max, lo, cosine)
        hp.reset = mx.remainder(t, gap) == 0
        s = mx.where(t < gap, t, mx.remainder(t, gap) + 1)  # the moments' step count, restarted at each reset
        hp.beta1_t = hp.beta1 * scale
        hp.step_size = hp.lr / F.bias_correction(hp.beta1_t, s)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2", s))
        hp.theta_t = F.bias_correction(hp.theta, t)
        gamma1 = hp.gamma1 * scale
        hp.norm_weight = 1.0 - gamma1
        hp.norm_bc1 = F.bias_correction(gamma1, t)
        hp.norm_bc2 = F.bias_correction(hp.gamma2, t)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, _ = self.apply_weight_decay(p, g, decouple=True)
        max_grad = mx.max(mx.abs(g))
        m_max = F.lerp(state["m_max_t"], max_grad, 1 - hp.theta)
        state["m_max_t"] = m_max
        m_max_hat = m_max / hp.theta_t
        g = mx.where(mx.abs(g) > m_max_hat, g / max_grad * m_max_hat, g)
        g_norm = F.norm(g)
        active = g_norm > 0
        m_norm = mx.where(active, F.lerp(state["m_norm_t"], g_norm, hp.norm_weight), state["m_norm_t"])
        v_norm = mx.where(active, F.lerp(state["v_norm_t"], mx.square(g_norm), 1 - hp.gamma2), state["v_norm_t"])
        state["m_norm_t"], state["v_norm_t"] = m_norm, v_norm
        c_norm = (m_norm / hp.norm_bc1) / (mx.sqrt(v_norm / hp.norm_bc2) + hp.eps)
        g = g / mx.where(active, g_norm, 1.0) * c_norm
        m0 = mx.where(hp.reset, 0.0, state["exp_avg"])
        v0 = mx.where(hp.reset, 0.0, state["exp_avg_sq"])
        m = mx.where(active, F.lerp(m0, g, 1 - hp.beta1_t), m0)
        v = mx.where(active, hp.beta2 * v0 + hp.one_minus_beta2 * mx.square(g), v0)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        new = p - hp.step_size * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)
        return mx.where(active, new, p)
