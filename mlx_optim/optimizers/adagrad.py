"""Adagrad (Duchi et al., 2011) as ``torch.optim.Adagrad``."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011) as ``torch.optim.Adagrad``.

    .. math::
        s_t = s_{t-1} + g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}} \frac{g_t}{\sqrt{s_t} + \epsilon}

    ``s_0 = initial_accumulator_value``; ``eps`` defaults to 1e-10 as in PyTorch
    (``mlx.optimizers.Adagrad`` uses 1e-8 and has no ``lr_decay``).
    """

    name = "adagrad"
    family = "adaptive"
    reference = "torch.optim.Adagrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        lr_decay: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: Tunable = 1e-10,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lr_decay", lr_decay, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("initial_accumulator_value", initial_accumulator_value, 0.0)
        self._hyper("eps", eps, 0.0)
        self.initial_accumulator_value = float(initial_accumulator_value)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["sum"] = self.full(parameter, self.initial_accumulator_value)

    def step_scalars(self, hp) -> None:
        hp.clr = hp.lr / (1 + (hp.step - 1) * hp.lr_decay)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        s = state["sum"] + mx.square(g)
        state["sum"] = s
        return p - hp.clr * g / (mx.sqrt(s) + hp.eps)
