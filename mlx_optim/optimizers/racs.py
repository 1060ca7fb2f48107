"""RACS: row and column scaled SGD."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def racs_shape(shape: Sequence[int]) -> tuple[int, int]:
    """The matrix view RACS scales: ``(numel, 1)`` below 2-D, ``(shape[0], rest)`` above."""
    if len(shape) < 2:
        return math.prod(shape), 1
    return shape[0], math.prod(shape[1:])


@register
class RACS(Optimizer):
    r"""RACS: row and column scaled SGD, with a limit on how fast the scaled update's norm grows.

    Every tensor is viewed as a matrix :math:`G` (:func:`racs_shape`); running row and column means of
    :math:`G^2` scale it, and the growth of the scaled update's norm is limited by ``gamma``:

    .. math::
        s_t = \beta s_{t-1} + (1-\beta)\operatorname{mean}_{cols}(G^2),\quad
        q_t = \beta q_{t-1} + (1-\beta)\operatorname{mean}_{rows}(G^2),\quad
        \hat G = \frac{G}{\sqrt{s_t+\epsilon}\,\sqrt{q_t+\epsilon}^\top} \\
        \tau_t = \frac{\gamma}{\max(\lVert\hat G\rVert / (\theta_{t-1}+\epsilon), \gamma)}\ (\tau_1 = 1),\quad
        \theta_t = \tau_t \lVert\hat G\rVert,\quad p_t = p_{t-1} - \eta\,\alpha\,\tau_t \hat G

    Weight decay is decoupled by default.

    Paper: Gong et al., "Towards Efficient Optimizer Design for LLM via Structured Fisher Approximation with
    a Low-Rank Extension", arXiv:2502.07752, 2025.

    Reference: ``pytorch_optimizer.RACS`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        beta: Decay rate :math:`\beta` of the row and column averages of :math:`G^2`, in [0, 1).
            Default ``0.9``.
        alpha: Update scale :math:`\alpha`, in [0, 1). Default ``0.05``.
        gamma: Largest growth factor :math:`\gamma` of the scaled update's norm per step (> 0).
            Default ``1.01``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        eps: Term added to the row and column averages (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "racs"
    family = "sgd"
    reference = "pytorch_optimizer.RACS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.9,
        alpha: Tunable = 0.05,
        gamma: Tunable = 1.01,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._hyper("alpha", alpha, 0.0, 1.0, "[)")
        self._hyper("gamma", gamma, 0.0, None, "(]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        rows, cols = racs_shape(parameter.shape)
        state["s"] = self.zeros(parameter, shape=(rows,))
        state["q"] = mx.ones((cols,), dtype=self.state_dtype or self.compute_dtype(parameter))
        state["theta"] = self.zeros(parameter, shape=())

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        G = g.reshape(racs_shape(g.shape))
        G2 = mx.square(G)
        s = F.lerp(state["s"], mx.mean(G2, axis=1), hp.one_minus_beta)
        q = F.lerp(state["q"], mx.mean(G2, axis=0), hp.one_minus_beta)
        g_hat = G / (mx.sqrt(s + hp.eps)[:, None] * mx.sqrt(q + hp.eps)[None, :])
        g_hat_norm = F.norm(g_hat)
        limit = hp.gamma / mx.maximum(g_hat_norm / (state["theta"] + hp.eps), hp.gamma)
        threshold = mx.where(hp.step == 1, 1.0, limit)
        state["s"], state["q"], state["theta"] = s, q, g_hat_norm * threshold
        return p - (hp.lr * hp.alpha * threshold) * g_hat.reshape(p.shape)
