"""QHAdam (Ma & Yarats, 2019, "Quasi-hyperbolic momentum and Adam"), pytorch_optimizer semantics."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class QHAdam(Optimizer):
    r"""QHAdam (Ma & Yarats, 2019, "Quasi-hyperbolic momentum and Adam"), pytorch_optimizer semantics.

    Bias-corrected moments via running weights :math:`w_t = \beta w_{t-1} + 1`:

    .. math::
        m_t = m_{t-1} + \tfrac{1}{w^{(1)}_t}(g_t - m_{t-1}),\quad
        v_t = v_{t-1} + \tfrac{1}{w^{(2)}_t}(g_t^2 - v_{t-1}),\\
        p_t = p_{t-1} - \eta \frac{\nu_1 m_t + (1-\nu_1) g_t}{\sqrt{\nu_2 v_t + (1-\nu_2) g_t^2} + \epsilon}

    The weights are the same for every tensor, so they are kept once in
    ``state["beta1_weight"]`` / ``state["beta2_weight"]``. The Keras seed calls
    ``nus`` ``Nus2``.
    """

    name = "qhadam"
    family = "adam"
    reference = "pytorch_optimizer.QHAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        nus: Sequence[float] = (1.0, 1.0),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        nus = tuple(nus)
        if len(nus) != 2:
            raise ValueError(f"QHAdam: nus={nus!r} must have 2 values")
        self._hyper("nu1", nus[0], 0.0, 1.0)
        self._hyper("nu2", nus[1], 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.state["beta1_weight"] = mx.array(0.0, mx.float32)
        self.state["beta2_weight"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        w1 = self.state["beta1_weight"] * hp.beta1 + 1.0
        w2 = self.state["beta2_weight"] * hp.beta2 + 1.0
        self.state["beta1_weight"], self.state["beta2_weight"] = w1, w2
        hp.inv_w1, hp.inv_w2 = 1.0 / w1, 1.0 / w2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        g_sq = mx.square(g)
        m = F.lerp(state["exp_avg"], g, hp.inv_w1)
        v = F.lerp(state["exp_avg_sq"], g_sq, hp.inv_w2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        avg_grad = hp.nu1 * m + hp.one_minus_nu1 * g
        avg_rms = mx.sqrt(hp.nu2 * v + hp.one_minus_nu2 * g_sq) + hp.eps
        return p - hp.lr * avg_grad / avg_rms
