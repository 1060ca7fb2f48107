"""Adalite: Adam-like updates with factored moments and a tensor-wise trust ratio."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def adalite_factored_step(g, m, v, state, hp, step_bc2):
    """Adalite's row/column-factored moments for a 2-D gradient; returns ``(u, v_avg)`` and refreshes ``state``."""
    m = F.lerp(m, g, hp.one_minus_beta1)
    v = F.lerp(v, mx.square(g - m), hp.one_minus_beta2)
    v_avg = v / step_bc2
    row_mean, col_mean = v.mean(axis=1), v.mean(axis=0)
    imp_c = mx.softmax(row_mean, axis=0)[:, None]
    imp_r = mx.softmax(col_mean, axis=0)[None, :]
    m = F.lerp(m, g, 1 - imp_c * imp_r)
    u = F.lerp(m, g, hp.one_minus_beta1)
    state["v_avg_0"] = v.sum(axis=1)
    state["v_avg_1"] = v.sum(axis=0) / mx.maximum(v.sum(), hp.eps2)
    imp_c = mx.softmax(row_mean / hp.tau, axis=-1)[:, None]
    imp_r = mx.softmax(col_mean / hp.tau, axis=-1)[None, :]
    c = (m * imp_r).sum(axis=1)[:, None]
    r = (m * imp_c).sum(axis=0)[None, :]
    s = (c.T @ m @ r.T) / mx.maximum(mx.square(c).sum() * mx.square(r).sum(), hp.eps2)
    state["m_avg_c"], state["m_avg_r"], state["m_avg_u"] = c, r, s
    return u, v_avg


@register
class Adalite(Optimizer):
    r"""Adalite: Adam-like updates with factored moments and a tensor-wise trust ratio.

    The gradient is rescaled by the trust ratio
    :math:`\max(\lVert p\rVert / \max(\lVert g\rVert, g_{min}), r_{min})`. For
    tensors with two or more dimensions (reshaped to ``(shape[0], -1)``) the first
    moment is kept as a rank-one factorization :math:`m = c\,s\,r` and the second
    moment as row/column sums (Adafactor-like); vectors keep full moments.

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        v_t = \operatorname{lerp}(v_{t-1}, (g_t - m_t)^2, 1-\beta_2),\quad
        p_t = p_{t-1} - \eta\,\frac{\operatorname{lerp}(m_t, g_t, 1-\beta_1)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_1}}

    (for matrices ``m`` is first pulled towards ``g`` by softmax row/column
    importances of ``v``, and the factors are rebuilt with softmax weights at temperature ``tau``).

    Reference: ``pytorch_optimizer.Adalite`` (no paper), same keywords and defaults.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``1e-2``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        g_norm_min: Lower bound :math:`g_{min}` of the gradient norm in the trust ratio. Default ``1e-10``.
        ratio_min: Lower bound :math:`r_{min}` of the trust ratio. Default ``1e-4``.
        tau: Softmax temperature of the row and column importance weights. Default ``1.0``.
        eps1: :math:`\epsilon_1` (>= 0) added under the square root. Default ``1e-6``.
        eps2: Lower bound (>= 0) of the factored moments' normalizing denominators. Default ``1e-10``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adalite"
    family = "adam"
    reference = "pytorch_optimizer.Adalite"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        g_norm_min: Tunable = 1e-10,
        ratio_min: Tunable = 1e-4,
        tau: Tunable = 1.0,
        eps1: Tunable = 1e-6,
        eps2: Tunable = 1e-10,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("g_norm_min", g_norm_min)
        self._hyper("ratio_min", ratio_min)
        self._hyper("tau", tau)
        self._hyper("eps1", eps1, 0.0)
        self._hyper("eps2", eps2, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if parameter.ndim < 2:
            self.zero_state(parameter, state, "m_avg", "v_avg")
            return
        rows = parameter.shape[0]
        cols = parameter.size // rows if rows else 0
        state["v_avg_0"] = self.zeros(parameter, (rows,))
        state["v_avg_1"] = self.zeros(parameter, (cols,))
        state["m_avg_c"] = self.zeros(parameter, (rows, 1))
        state["m_avg_r"] = self.zeros(parameter, (1, cols))
        state["m_avg_u"] = self.zeros(parameter, (1, 1))

    def step_scalars(self, hp) -> None:
        hp.bc2 = hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        shape = p.shape
        if g.ndim > 2:
            g = g.reshape(g.shape[0], -1)
        if not self.weight_decouple:
            _, g = self.apply_weight_decay(p.reshape(g.shape), g, decouple=False)
        if sum(g.shape) > 1:
            trust_ratio = mx.maximum(F.norm(p) / mx.maximum(F.norm(g), hp.g_norm_min), hp.ratio_min)
            g = g * trust_ratio
        if g.ndim < 2:
            m = F.lerp(state["m_avg"], g, hp.one_minus_beta1)
            v = F.lerp(state["v_avg"], mx.square(g - m), hp.one_minus_beta2)
            state["m_avg"], state["v_avg"] = m, v
            u, v_avg = F.lerp(m, g, hp.one_minus_beta1), v / hp.bc2
        else:
            r, c = state["v_avg_0"][:, None], state["v_avg_1"][None, :]
            v = (r * c) / mx.maximum(r.sum(), hp.eps2)
            m = state["m_avg_c"] @ state["m_avg_u"] @ state["m_avg_r"]
            u, v_avg = adalite_factored_step(g, m, v, state, hp, hp.bc2)
        u = (u / mx.sqrt(v_avg + hp.eps1)).reshape(shape)
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p - hp.lr * u
