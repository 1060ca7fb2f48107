"""Gravity (Bahrami & Zadeh, 2021): a kinematic optimizer."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Gravity(Optimizer):
    r"""Gravity: a kinematic update, gradients damped by the tensor's largest magnitude and averaged into a velocity.

    Each gradient entry is damped by the tensor's largest gradient magnitude and averaged into a velocity
    with a step-dependent weight:

    .. math::
        \zeta_t = \frac{g_t}{1 + (g_t \max|g_t|)^2},\quad
        \beta_t = \frac{\beta t + 1}{t + 2},\quad
        v_t = \beta_t v_{t-1} + (1-\beta_t)\zeta_t,\quad p_t = p_{t-1} - \eta v_t

    The velocity starts as Gaussian noise with std :math:`\alpha/\eta`, drawn from ``state["key"]``.

    Paper: "Gravity Optimizer: a Kinematic Approach on Optimization in Deep Learning" (Bahrami & Zadeh, 2021),
    arXiv:2101.09192. Reference: ``pytorch_optimizer.Gravity``, same keywords and defaults; ``seed`` is added.
    The initial noise cannot match torch's RNG draw, so the parity rows inject the same initial velocity into
    the reference (the rest of the math is then exact) and compare the noise's statistics separately.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-2``.
        alpha: Scale :math:`\alpha` in [0, 1) of the initial velocity's noise (std :math:`\alpha/\eta`). Default
            ``0.01``.
        beta: Base weight :math:`\beta` in [0, 1] of the velocity average. Default ``0.9``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        seed (int): Seed of the key for the initial velocity. Default ``0``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "gravity"
    family = "sgd"
    reference = "pytorch_optimizer.Gravity"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        alpha: Tunable = 0.01,
        beta: Tunable = 0.9,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("alpha", alpha, 0.0, 1.0, "[)")
        self._hyper("beta", beta, 0.0, 1.0, "[]")
        self.globals["key"] = mx.random.key(seed)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        key, sub = mx.random.split(self.globals["key"])
        self.globals["key"] = key
        std = self.tunable("alpha") / self.tunable("learning_rate")
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["v"] = (mx.random.normal(parameter.shape, key=sub) * std).astype(dtype)

    def step_scalars(self, hp) -> None:
        hp.beta_t = (hp.beta * hp.step + 1) / (hp.step + 2)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = 1.0 / mx.max(mx.abs(g))
        zeta = g / (1.0 + mx.square(g / m))
        v = F.lerp(state["v"], zeta, 1 - hp.beta_t)
        state["v"] = v
        return p - hp.lr * v
