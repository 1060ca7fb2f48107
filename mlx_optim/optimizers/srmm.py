"""SRMM (Yang et al., 2022): stochastic regularized majorization-minimization."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class SRMM(Optimizer):
    r"""SRMM (Yang et al., 2022): stochastic regularized majorization-minimization.

    With :math:`w_t = ((t \bmod L) + 1)^{-\beta}` (:math:`w_t = 1` without a memory length :math:`L`):

    .. math::
        \bar g_t = (1-w_t)\bar g_{t-1} + w_t g_t,\quad
        \bar p_t = (1-w_t)\bar p_{t-1} + w_t p_{t-1} - \eta \bar g_t,\quad p_t = \bar p_t

    Paper: "Stochastic regularized majorization-minimization with weakly convex and
    multi-convex surrogates", 2022. ``memory_length`` must be None or at least 1 (the reference
    fails later with a ZeroDivisionError on 0).
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
        state["mov_avg_grad"] = self.zeros(parameter)
        state["mov_avg_param"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        length = float(self.memory_length) if self.memory_length is not None else 1.0
        hp.w = mx.power(mx.remainder(hp.step, length) + 1.0, -hp.beta)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g_avg = F.lerp(state["mov_avg_grad"], g, hp.w)
        p_avg = F.lerp(state["mov_avg_param"], p, hp.w) - hp.lr * g_avg
        state["mov_avg_grad"], state["mov_avg_param"] = g_avg, p_avg
        return p_avg
