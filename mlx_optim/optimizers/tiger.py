"""Tiger (Su, 2023), pytorch_optimizer semantics: sign of a single momentum."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Tiger(Optimizer):
    r"""Tiger (Su, 2023), pytorch_optimizer semantics: sign of a single momentum.

    .. math:: m_t = \beta m_{t-1} + (1-\beta) g_t,\quad p_t = p_{t-1} - \eta \operatorname{sign}(m_t)
    """

    name = "tiger"
    family = "sign"
    reference = "pytorch_optimizer.Tiger"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.965,
        weight_decay: Tunable = 0.01,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = hp.beta * state["exp_avg"] + hp.one_minus_beta * g
        state["exp_avg"] = m
        return p - hp.lr * F.sign(m)
