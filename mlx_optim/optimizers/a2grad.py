"""A2Grad, adaptive accelerated SGD (Deng et al., 2018)."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, state_copy
from mlx_optim.registry import register


@register
class A2Grad(Optimizer):
    r"""A2Grad: adaptive accelerated SGD with a uniform, increasing or exponential moving average of gradient noise.

    With :math:`\gamma_t = 2L/(t+1)`, :math:`\alpha_t = 2/(t+2)` (:math:`\alpha_0 = 1`) and
    :math:`\bar g_t` the running mean of the gradients:

    .. math::
        v_t = v_{t-1} + \lVert g_t - \bar g_t \rVert^2 \ (\text{uni}),\quad
        h_t = \sqrt{v_t}\ (\times \sqrt{t+1} \text{ for inc/exp}),\quad
        c_t = -1/(\gamma_t + \beta h_t) \\
        x_t = x_{t-1} + c_t g_t,\quad
        p_t = (1-\alpha_{t}) p_{t-1} + \alpha_{t} x_t + (1-\alpha_{t}) \alpha_{t-1} c_t g_t

    ``variant='inc'`` scales :math:`v` by :math:`(t/(t+1))^2` before adding;
    ``'exp'`` keeps :math:`\tilde v_t = \rho \tilde v_{t-1} + (1-\rho)\lVert g_t - \bar g_t\rVert^2`
    and :math:`v_t = \max(v_{t-1}, \tilde v_t)`. :math:`v` is one scalar per tensor; :math:`x` starts at the
    initial parameters. There is no learning rate: the step sizes come from :math:`L`, :math:`\beta` and
    :math:`h_t`.

    Paper: "Optimal Adaptive and Accelerated Stochastic Gradient Descent" (Deng, Cheng, Lan, 2018), arXiv:1810.00553.
    Reference: ``pytorch_optimizer.A2Grad``, same keywords and defaults.

    Args:
        learning_rate: Unused; accepted and validated (a float >= 0 or a schedule) like the reference's ``lr``.
            Default ``None``.
        beta: Weight :math:`\beta` of the adaptive term :math:`h_t` in the step coefficient. Default ``10.0``.
        lips: Lipschitz constant :math:`L` (> 0); larger values take smaller steps. Default ``10.0``.
        rho: Smoothing factor :math:`\rho` (>= 0) of the ``'exp'`` variant's moving average; unused by the
            other variants. Default ``0.5``.
        variant: How :math:`v_t` accumulates: ``'uni'`` (uniform sum), ``'inc'`` (increasing weights) or
            ``'exp'`` (exponential moving average, kept monotone). Default ``'uni'``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "a2grad"
    family = "sgd"
    reference = "pytorch_optimizer.A2Grad"

    def __init__(
        self,
        learning_rate: Tunable | None = None,
        beta: Tunable = 10.0,
        lips: Tunable = 10.0,
        rho: Tunable = 0.5,
        variant: str = "uni",
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(0.0 if learning_rate is None else learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta)
        self._hyper("lips", lips, 0.0, None, "(]")
        self._hyper("rho", rho, 0.0)
        self._choice("variant", variant, ("uni", "inc", "exp"))
        self.variant = variant

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["avg_grad"] = self.zeros(parameter)  # the first step overwrites it with g_1
        state["x_k"] = state_copy(self, parameter)
        state["v_k"] = self.zeros(parameter, shape=())
        if self.variant == "exp":
            state["v_kk"] = self.zeros(parameter, shape=())

    def step_scalars(self, hp) -> None:
        t = hp.step
        hp.gamma_k = 2.0 * hp.lips / (t + 1)
        hp.alpha_next = 2.0 / (t + 3)
        hp.alpha_k = mx.where(t == 1, 1.0, 2.0 / (t + 2))  # the previous step's alpha_next
        hp.inc_factor = mx.square(t / (t + 1))
        hp.h_scale = mx.sqrt(t + 1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        avg = F.lerp(state["avg_grad"], g, 1.0 / hp.step)
        delta_sq = mx.sum(mx.square(g - avg))
        v = state["v_k"]
        if self.variant == "exp":
            v_kk = F.lerp(state["v_kk"], delta_sq, hp.one_minus_rho)
            state["v_kk"] = v_kk
            v = mx.maximum(v, v_kk)
        else:
            v = (v * hp.inc_factor if self.variant == "inc" else v) + delta_sq
        h = mx.sqrt(v) if self.variant == "uni" else mx.sqrt(v) * hp.h_scale
        coef = -1.0 / (hp.gamma_k + hp.beta * h)
        x = state["x_k"] + coef * g
        state["avg_grad"], state["v_k"], state["x_k"] = avg, v, x
        p = F.lerp(p, x, hp.alpha_next)
        return p + ((1 - hp.alpha_next) * hp.alpha_k * coef) * g
