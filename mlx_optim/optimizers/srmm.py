"""SRMM: stochastic regularized majorization-minimization."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class SRMM(Optimizer):
    r"""SRMM: stochastic regularized majorization-minimization, SGD on running averages of gradients and iterates.

    With :math:`w_t = ((t \bmod L) + 1)^{-\beta}` (:math:`w_t = 1` without a memory length :math:`L`):

    .. math::
        \bar g_t = (1-w_t)\bar g_{t-1} + w_t g_t,\quad
        \bar p_t = (1-w_t)\bar p_{t-1} + w_t p_{t-1} - \eta \bar g_t,\quad p_t = \bar p_t

    Paper: Lyu, "Stochastic regularized majorization-minimization with weakly convex and multi-convex
    surrogates", arXiv:2201.01652, 2022.

    Reference: ``pytorch_optimizer.SRMM`` (parity-checked). ``memory_length`` must be ``None`` or at least 1
    (the reference fails later with a ZeroDivisionError on 0).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``0.01``.
        beta: Exponent :math:`\beta` of the averaging weight, in [0, 1]. Default ``0.5``.
        memory_length: Memory length :math:`L` after which the averaging weight restarts at 1 (>= 1);
            ``None`` never refreshes. Default ``100``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "srmm"
    family = "sgd"
    reference = "pytorch_optimizer.SRMM"

    def __init__(
        self,
        learning_rate: Tunable = 0.01,
        beta: Tunable = 0.5,
        memory_length: int | None = 100,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0)
        if memory_length is not None:
            self._check("memory_length", memory_length, 1)
        self.memory_length = memory_length

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "mov_avg_grad", "mov_avg_param")

    def step_scalars(self, hp) -> None:
        length = float(self.memory_length) if self.memory_length is not None else 1.0
        hp.w = mx.power(mx.remainder(hp.step, length) + 1.0, -hp.beta)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g_avg = F.lerp(state["mov_avg_grad"], g, hp.w)
        p_avg = F.lerp(state["mov_avg_param"], p, hp.w) - hp.lr * g_avg
        state["mov_avg_grad"], state["mov_avg_param"] = g_avg, p_avg
        return p_avg
