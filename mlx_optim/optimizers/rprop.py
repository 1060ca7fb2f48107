"""Rprop: resilient backpropagation, as torch.optim.Rprop."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Rprop(Optimizer):
    """Rprop: resilient backpropagation, sign steps with a per-coordinate step size, as ``torch.optim.Rprop``.

    Each coordinate keeps its own step size (starting at ``learning_rate``), multiplied by ``etas[1]`` while
    the gradient keeps its sign and by ``etas[0]`` when it flips (then the update of that coordinate is skipped
    and its stored gradient zeroed), clipped to ``step_sizes``. The parameter moves by
    ``-sign(g) * step_size``.

    Paper: Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning: the RPROP
    algorithm", IEEE ICNN 1993.

    Reference: ``torch.optim.Rprop`` (parity-checked).

    Args:
        learning_rate: Initial per-coordinate step size, a float or a schedule (read once, at the state's
            creation). Default ``1e-2``.
        etas: ``(etaminus, etaplus)``, the step-size factors after a sign flip and after a kept sign, with
            ``0 < etaminus < 1 < etaplus``. Default ``(0.5, 1.2)``.
        step_sizes: ``(min, max)`` bounds of the step sizes (>= 0). Default ``(1e-6, 50.0)``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated; keyword-only).
            Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "rprop"
    family = "adaptive"
    reference = "torch.optim.Rprop"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        etas: Sequence[float] = (0.5, 1.2),
        step_sizes: Sequence[float] = (1e-6, 50.0),
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        etaminus, etaplus = etas
        self._check("etas[0]", etaminus, 0.0, 1.0, "()")
        self._check("etas[1]", etaplus, 1.0, None, "()")
        self._hyper("etaminus", etaminus)
        self._hyper("etaplus", etaplus)
        self._hyper("step_size_min", step_sizes[0], 0.0)
        self._hyper("step_size_max", step_sizes[1], 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["prev"] = self.zeros(parameter)
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["step_size"] = mx.full(parameter.shape, self.tunable("learning_rate"), dtype=dtype)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        same = g * state["prev"]
        factor = mx.where(same > 0, hp.etaplus, mx.where(same < 0, hp.etaminus, 1.0))
        step_size = mx.clip(state["step_size"] * factor, hp.step_size_min, hp.step_size_max)
        g = mx.where(same < 0, 0.0, g)
        state["step_size"], state["prev"] = step_size, g
        return p - F.sign(g) * step_size
