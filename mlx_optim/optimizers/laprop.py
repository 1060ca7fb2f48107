"""LaProp: momentum of the RMSprop-preconditioned gradient."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class LaProp(Optimizer):
    r"""LaProp: Adam with momentum taken of the preconditioned gradient, separating momentum from adaptivity.

    RMSprop step first, then momentum:

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,\eta_t \frac{g_t}{(\sqrt{v_t + 10^{-15}} + \epsilon)/\sqrt{1-\beta_2^t}} \\
        p_t = p_{t-1} - \frac{\eta_t}{\bar\eta_t} m_t,\quad \bar\eta_t = \beta_1\bar\eta_{t-1} + (1-\beta_1)\eta_t

    :math:`\bar\eta_t` (an EMA of the learning rate, ``state["exp_avg_lr_1"]``) is the first-moment bias
    correction, exact also under learning-rate schedules. ``centered`` subtracts the squared gradient mean
    from :math:`v_t` after ``steps_before_using_centered`` steps; ``ams_bound`` uses the running maximum;
    ``cautious`` masks the momentum. Decoupled weight decay is applied after the update. Reference quirk
    kept: with ``weight_decouple=False`` the L2 term is added to the gradient after it was used, so no weight
    decay happens.

    Paper: Ziyin et al., "LaProp: Separating Momentum and Adaptivity in Adam", arXiv:2002.04839, 2020.

    Reference: ``pytorch_optimizer.LaProp`` (parity-checked), including its ``cautious`` option
    (keyword-only here).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``4e-4``.
        betas: ``(beta1, beta2)``, decay rates of the momentum and of the second-moment EMA, each in [0, 1).
            Default ``(0.9, 0.999)``.
        centered: Subtract the squared EMA of the gradient from the second moment (a variance estimate).
            Default ``False``.
        steps_before_using_centered: With ``centered``, the number of steps that accumulate the gradient mean
            before it is subtracted. Default ``10``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)`` after the update;
            ``False`` has no effect (see above). Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        ams_bound: Divide by the running maximum of the second moment (AMSGrad). Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-15``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        cautious: Zero the update where its sign disagrees with the gradient and rescale the rest
            (keyword-only). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "laprop"
    family = "adam"
    reference = "pytorch_optimizer.LaProp"

    def __init__(
        self,
        learning_rate: Tunable = 4e-4,
        betas: Sequence[float] = (0.9, 0.999),
        centered: bool = False,
        steps_before_using_centered: int = 10,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-15,
        maximize: bool = False,
        *,
        cautious: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.centered, self.steps_before_using_centered = centered, steps_before_using_centered
        self.ams_bound, self.cautious = ams_bound, cautious
        self.globals["exp_avg_lr_1"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
        if self.centered:
            state["exp_mean_avg_beta2"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        avg_lr = hp.beta1 * self.globals["exp_avg_lr_1"] + hp.one_minus_beta1 * hp.lr
        self.globals["exp_avg_lr_1"] = avg_lr
        hp.step_size = mx.where(hp.lr != 0, hp.lr / avg_lr, 1.0)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.use_centered = hp.step > self.steps_before_using_centered
        # (1 - beta1) lr * (g / (denom / bc2_sqrt)) as (1 - beta1) lr bc2_sqrt * (g / denom): a rounding apart,
        # one operation shallower, so that mx.compile fuses the whole update into one kernel (mlx_optim.fusion)
        hp.m_scale = hp.one_minus_beta1 * hp.lr * hp.bc2_sqrt

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg_sq"] = v
        second = v
        if self.centered:
            mean = F.lerp(state["exp_mean_avg_beta2"], g, hp.one_minus_beta2)
            state["exp_mean_avg_beta2"] = mean
            second = mx.where(hp.use_centered, v - mx.square(mean), v)
        if self.ams_bound:
            second = self.apply_amsgrad(state, second)
        m = hp.beta1 * state["exp_avg"] + hp.m_scale * (g / F.ams_bound_denom(second, hp.eps))
        state["exp_avg"] = m
        update = self.apply_cautious(m, g) if self.cautious else m
        p = p - hp.step_size * update
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p
