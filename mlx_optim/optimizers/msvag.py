"""M-SVAG: momentum SGD damped per coordinate by the gradient's relative variance."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def msvag_factor(m: mx.array, v: mx.array, rho: Any, one_minus_rho: Any = None) -> mx.array:
    """M-SVAG's variance-adapted factor ``m^2 / (m^2 + rho * s)`` with ``s = (v - m^2) / (1 - rho)``, in [0, 1].

    ``one_minus_rho``: ``1 - rho`` if the caller has it already (a per-step scalar)."""
    m2 = mx.square(m)
    s = (v - m2) / (1 - rho if one_minus_rho is None else one_minus_rho)
    factor = m2 / (s * rho + m2)
    # = clip(where(isnan(factor), 0, factor), 0, 1) bit for bit (NaN and factor <= 0 give +0), one operation
    # shallower, which leaves mx.compile room to fuse more of M-SVAG's update (mlx_optim.fusion)
    return mx.minimum(mx.where(factor > 0, factor, 0.0), 1.0)


@register
class MSVAG(Optimizer):
    r"""M-SVAG: momentum SGD damped per coordinate by the gradient's relative variance.

    .. math::
        \hat m_t = \frac{m_t}{1-\beta^t},\quad \hat v_t = \frac{v_t}{1-\beta^t},\quad
        s_t = \frac{\hat v_t - \hat m_t^2}{1-\rho_t},\quad
        p_t = p_{t-1} - \eta\, \hat m_t \operatorname{clip}\!\Big(\frac{\hat m_t^2}{\hat m_t^2 + \rho_t s_t}, 0, 1\Big)

    with :math:`m_t, v_t` the EMAs (factor :math:`\beta`) of :math:`g_t` and :math:`g_t^2` and
    :math:`\rho_t = \min\big(\frac{(1-\beta^{2t})(1-\beta)^2}{(1-\beta^2)(1-\beta^t)^2}, 0.9999\big)`.

    Paper: Balles & Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic Gradients",
    ICML 2018, arXiv:1705.07774.

    Reference: ``pytorch_optimizer.MSVAG`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-2``.
        beta: Decay rate :math:`\beta` of both moment EMAs, in [0, 1]. Default ``0.9``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "msvag"
    family = "adam"
    reference = "pytorch_optimizer.MSVAG"
    # p' <- factor <- s <- v <- v_ema is 11 operations deep to v_ema: mx.compile gives the new second moment
    # (a state output, written anyway) a kernel of its own, which the update's kernel reads back
    ops_per_leaf = 2

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        beta: Tunable = 0.9,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[]")

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.bc = hp.bias_correction("beta")  # 1 - beta^t and 1 - beta from the double-precision complement
        beta_power = 1 - hp.bc
        one_minus_beta_sq = hp.one_minus_beta * (1 + hp.beta)
        rho = (1 - mx.square(beta_power)) * mx.square(hp.one_minus_beta) / (one_minus_beta_sq * mx.square(hp.bc))
        hp.rho = mx.minimum(rho, 0.9999)
        hp.one_minus_rho = 1 - hp.rho

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m, v = hp.ema(state["exp_avg"], g, "beta"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        m, v = m / hp.bc, v / hp.bc
        # = p - (lr m) factor exactly (a product commutes); visiting the factor first lets mx.compile place m (and
        # its EMA) near the root, so the update takes two kernels, not four (mlx_optim.fusion)
        return p - msvag_factor(m, v, hp.rho, hp.one_minus_rho) * (hp.lr * m)
