"""Amos (Tian & Parikh, 2022): adaptive weight decay towards a model-oriented scale."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def amos_scale(shape: Sequence[int]) -> float:
    """The reference's target weight scale from the shape: 0.5 for vectors, ``sqrt(2/shape[1])`` for
    matrices, ``sqrt(1/shape[1])`` otherwise."""
    if len(shape) <= 1:
        return 0.5
    if len(shape) == 2:
        return math.sqrt(2 / shape[1])
    return math.sqrt(1 / shape[1])


@register
class Amos(Optimizer):
    r"""Amos: Adam-style step with adaptive weight decay towards a target scale derived from the parameter's shape.

    With :math:`\bar g^2_t = \operatorname{mean}(g_t^2)` per tensor,
    :math:`\hat v_t = \operatorname{EMA}_\beta(\bar g^2)` and
    :math:`r_t = (1-\beta^t)/(\hat v_t + \epsilon)`, :math:`\eta_0 = \eta\,\sigma(p)`:

    .. math::
        \gamma_t = \frac{\eta^2 r_t \bar g^2_t}{\sqrt{1 + c\sqrt\eta\, d_{t-1}}},\quad
        u_t = \frac{\tfrac12(\gamma_t - \lambda_{l2}) p + \eta_0 \sqrt{r_t}\, g_t}{1 + d\sqrt{\eta_0}\, d_{t-1}},\quad
        d_t = d_{t-1}(1+\gamma_t) + \gamma_t,\quad p_t = p_{t-1} - u_t

    (``momentum`` > 0 averages :math:`u_t`). The target scale :math:`\sigma(p)` is 0.5 for vectors,
    :math:`\sqrt{2/\text{shape}[1]}` for matrices and :math:`\sqrt{1/\text{shape}[1]}` otherwise; it follows the
    reference's PyTorch layout (``shape[1]`` is the fan-in of a Linear weight, as in MLX; for MLX conv weights
    ``shape[1]`` is a kernel dimension, as the reference's rule would read it).

    Paper: "Amos: An Adam-style Optimizer with Adaptive Weight Decay towards Model-Oriented Scale" (Tian &
    Parikh, 2022), arXiv:2210.11693. Reference: ``pytorch_optimizer.Amos``, same keywords and defaults.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        beta: Decay rate :math:`\beta` in [0, 1) of the mean squared gradient; :math:`1-\beta` of the order of
            the learning rate works best. Default ``0.999``.
        momentum: Momentum in [0, 1) applied to the update; 0 keeps no buffer. Default ``0.0``.
        extra_l2: Additional L2 regularization :math:`\lambda_{l2}` (>= 0). Default ``0.0``.
        c_coef: Coefficient :math:`c` of the decay factor of :math:`\gamma_t`. Default ``0.25``.
        d_coef: Coefficient :math:`d` of the decay factor of the update. Default ``0.25``.
        eps: :math:`\epsilon` (>= 0) added to :math:`\hat v_t`. Default ``1e-18``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "amos"
    family = "adam"
    reference = "pytorch_optimizer.Amos"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.999,
        momentum: Tunable = 0.0,
        extra_l2: Tunable = 0.0,
        c_coef: Tunable = 0.25,
        d_coef: Tunable = 0.25,
        eps: Tunable = 1e-18,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("extra_l2", extra_l2, 0.0)
        self._hyper("c_coef", c_coef)
        self._hyper("d_coef", d_coef)
        self._hyper("eps", eps, 0.0)
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg_sq"] = self.zeros(parameter, ())
        state["decay"] = self.zeros(parameter, ())
        if self.use_momentum:
            state["exp_avg"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc = hp.bias_correction("beta")
        hp.lr_sqrt = mx.sqrt(hp.lr)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g2 = mx.mean(mx.square(g))
        init_lr = hp.lr * amos_scale(p.shape)
        v = hp.beta * state["exp_avg_sq"] + hp.one_minus_beta * g2
        r_v_hat = hp.bc / (v + hp.eps)
        decay = state["decay"]
        factor_c = mx.rsqrt(1 + hp.c_coef * hp.lr_sqrt * decay)
        factor_d = 1 + hp.d_coef * mx.sqrt(init_lr) * decay
        gamma = factor_c * r_v_hat * (hp.lr * hp.lr) * g2
        update = (p / 2 * (gamma - hp.extra_l2) + g * (mx.sqrt(r_v_hat) * init_lr)) / factor_d
        state["exp_avg_sq"], state["decay"] = v, decay * (1 + gamma) + gamma
        if self.use_momentum:
            update = F.lerp(state["exp_avg"], update, hp.one_minus_momentum)
            state["exp_avg"] = update
        return p - update
