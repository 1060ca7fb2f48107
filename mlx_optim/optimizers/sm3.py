"""SM3: memory-efficient adaptive optimization with per-axis accumulators."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def sm3_second_moment(g: mx.array, accumulators: list[mx.array], beta: Any) -> tuple[mx.array, list[mx.array]]:
    """SM3-II: the per-entry second moment from per-axis accumulators, and the new accumulators.

    ``nu = beta' * min_i acc_i + (1 - beta) g^2`` (``beta' = beta`` if ``beta > 0`` else 1, i.e. a
    running sum); each accumulator becomes the max of ``nu`` over the other axes (with
    ``beta > 0`` also at least its old value).
    """
    nu = accumulators[0]
    for acc in accumulators[1:]:
        nu = mx.minimum(nu, acc)
    has_beta = beta > 0
    nu = mx.where(has_beta, beta * nu, nu) + (1 - beta) * mx.square(g)
    if g.ndim == 0:
        return nu, [nu]
    new = []
    for i, acc in enumerate(accumulators):
        other = tuple(d for d in range(g.ndim) if d != i)
        nu_max = mx.max(nu, axis=other, keepdims=True) if other else nu
        new.append(mx.where(has_beta, mx.maximum(acc, nu_max), nu_max))
    return nu, new


@register
class SM3(Optimizer):
    r"""SM3: memory-efficient adaptive optimization with one second-moment accumulator per tensor axis.

    A rank-:math:`k` tensor keeps :math:`k` accumulators, one per axis (a vector per axis, so
    :math:`\sum_i n_i` numbers instead of :math:`\prod_i n_i`):

    .. math::
        \nu_t = \beta\,\min_i a^{(i)}_{t-1} + (1-\beta) g_t^2,\quad
        a^{(i)}_t = \max\big(a^{(i)}_{t-1}, \max_{\neg i} \nu_t\big),\quad
        u_t = g_t / \sqrt{\nu_t + \epsilon} \\
        m_t = \operatorname{lerp}(m_{t-1}, u_t, 1-\mu),\quad p_t = p_{t-1} - \eta\, m_t

    With :math:`\beta = 0` (the default) :math:`\nu_t = \min_i a^{(i)}_{t-1} + g_t^2` and the accumulators
    are overwritten by the maxima (SM3-II).

    Paper: Anil et al., "Memory-Efficient Adaptive Optimization", NeurIPS 2019, arXiv:1901.11150.

    Reference: ``pytorch_optimizer.SM3`` (parity-checked). Deviation: the momentum buffer (always allocated
    by the reference) exists only when ``momentum > 0`` at construction; the momentum-free default keeps only
    the per-axis accumulators. Sparse gradients are not supported (MLX has none).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-1``.
        momentum: Momentum factor :math:`\mu`, in [0, 1); 0 keeps no momentum buffer. Default ``0.0``.
        beta: Decay rate :math:`\beta` of the accumulators, in [0, 1]; 0 sums (SM3-II). Default ``0.0``.
        eps: Term added to :math:`\nu_t` under the square root (>= 0). Default ``1e-30``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "sm3"
    family = "memory-efficient"
    reference = "pytorch_optimizer.SM3"

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        momentum: Tunable = 0.0,
        beta: Tunable = 0.0,
        eps: Tunable = 1e-30,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("beta", beta, 0.0, 1.0, "[]")
        self._hyper("eps", eps, 0.0)
        self.use_momentum = "momentum" not in self._zero

    def init_single(self, parameter: mx.array, state: dict) -> None:
        shape, rank = parameter.shape, parameter.ndim
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)
        if rank == 0:
            state["accumulator_0"] = self.zeros(parameter)
        for i in range(rank):
            state[f"accumulator_{i}"] = self.zeros(parameter, [1] * i + [shape[i]] + [1] * (rank - 1 - i))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        keys = [f"accumulator_{i}" for i in range(max(g.ndim, 1))]
        nu, accs = sm3_second_moment(g, [state[k] for k in keys], hp.beta)
        for k, a in zip(keys, accs):
            state[k] = a
        update = mx.rsqrt(nu + hp.eps) * g
        if self.use_momentum:
            update = F.torch_lerp(state["momentum_buffer"], update, hp.one_minus_momentum)
            state["momentum_buffer"] = update
        return p - hp.lr * update
