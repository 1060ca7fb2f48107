"""Fromage (Bernstein et al., 2020)."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Fromage(Optimizer):
    r"""Fromage: gradient steps of relative size :math:`\eta` (scaled by the norm ratio), then a shrink.

    .. math::
        p \leftarrow \frac{p - \eta \frac{\lVert p\rVert}{\lVert g\rVert} g}{\sqrt{1+\eta^2}}

    (the ratio is 1 where a norm is zero), per tensor.

    Paper: "On the distance between two neural networks and the stability of learning" (Bernstein et al.),
    NeurIPS 2020. Reference: ``pytorch_optimizer.Fromage``, same keywords and defaults.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-2``.
        p_bound (float | None): Keep each tensor's norm below ``p_bound`` times its initial norm (kept in
            state ``max``); ``None``: no bound. Default ``None``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "fromage"
    family = "sgd"
    reference = "pytorch_optimizer.Fromage"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        p_bound: float | None = None,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        if p_bound is not None:
            self._check("p_bound", p_bound)
        self.p_bound = p_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.p_bound is not None:
            state["max"] = F.norm(parameter) * self.p_bound

    def step_scalars(self, hp) -> None:
        hp.pre_factor = mx.sqrt(1.0 + hp.lr**2)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p_norm, g_norm = F.norm(p), F.norm(g)
        rescale = (p_norm > 0) & (g_norm > 0)
        ratio = mx.where(rescale, p_norm, 1.0) / mx.where(rescale, g_norm, 1.0)
        p = (p - hp.lr * (g * ratio)) / hp.pre_factor
        if self.p_bound is not None:
            norm, bound = F.norm(p), state["max"]
            p = mx.where(norm > bound, p * bound / norm, p)
        return p
