"""DualAdam: Adam that starts as a blend with the "inverse Adam" step."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class DualAdam(Optimizer):
    r"""DualAdam: Adam whose step starts as a blend with the "inverse Adam" step and decays to plain Adam.

    With :math:`d_t = \sqrt{v_t / (1-\beta_2^t)} + \epsilon` and the blend rate
    :math:`r_t = \max(0, 1 - t\,s)` (``s = switch_rate``), while :math:`r_t \ge s` the step multiplies
    :math:`\hat m_t` by :math:`\operatorname{lerp}(1/d_t, d_t, r_t)`, i.e. it starts close to
    :math:`\hat m_t d_t` ("inverse Adam") and moves linearly towards Adam's :math:`\hat m_t / d_t`;
    afterwards it is Adam:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        \hat m_t = \frac{m_t}{1-\beta_1^t} \\
        p_t = p_{t-1} - \eta\, \hat m_t \cdot
        \begin{cases} (1 - r_t)/d_t + r_t d_t & r_t \ge s \\ 1/d_t & \text{otherwise} \end{cases}

    Weight decay is an L2 penalty by default.

    Reference: ``pytorch_optimizer.DualAdam`` (no paper is cited there), same keywords and defaults. The switch
    test :math:`r_t \ge s` is evaluated in float32 (the reference: float64); the two can only disagree at a
    step where :math:`(t + 1) s = 1` exactly.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        switch_rate: Rate :math:`s` in [0, 1] at which the blend moves from inverse Adam to Adam (the blend lasts
            about :math:`1/s - 1` steps). Default ``1e-2``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "dualadam"
    family = "adam"
    reference = "pytorch_optimizer.DualAdam"
    elementwise = True

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        switch_rate: Tunable = 1e-2,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("switch_rate", switch_rate, 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")
        hp.inverse_rate = mx.maximum(1 - hp.step * hp.switch_rate, 0.0)
        hp.use_inverse = hp.inverse_rate >= hp.switch_rate

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        m_hat = m / hp.bc1
        d = mx.sqrt(v / hp.bc2) + hp.eps
        step = mx.where(hp.use_inverse, m_hat * F.lerp(1 / d, d, hp.inverse_rate), m_hat / d)
        return p - hp.lr * step
