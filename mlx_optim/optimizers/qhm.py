"""QHM (Ma & Yarats, 2019): quasi-hyperbolic momentum, a blend of the gradient and its average."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class QHM(Optimizer):
    r"""QHM (Ma & Yarats, 2019): quasi-hyperbolic momentum, a blend of the gradient and its average.

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad p_t = p_{t-1} - \eta\,\big(\nu b_t + (1-\nu) g_t\big)

    Paper: "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019. The Keras
    seed defaults ``nu=0.7`` and has ``weight_decay_type``; the reference (and this
    port) default ``nu=1.0`` and choose the decay with ``weight_decouple``/``fixed_decay``.
    """

    name = "qhm"
    family = "sgd"
    reference = "pytorch_optimizer.QHM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.0,
        nu: Tunable = 1.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("nu", nu, 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        buf = F.lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        return p - hp.lr * hp.nu * buf - hp.lr * hp.one_minus_nu * g
