"""KATE: scale-invariant AdaGrad without the square root."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Kate(Optimizer):
    r"""KATE: a scale-invariant version of AdaGrad without the square root.

    .. math::
        b_t^2 = b_{t-1}^2 + g_t^2 + \epsilon,\quad
        m_t^2 = m_{t-1}^2 + \delta g_t^2 + g_t^2 / b_t^2,\quad
        p_t = p_{t-1} - \eta \frac{m_t g_t}{b_t^2}

    The state keeps :math:`m_t` and :math:`b_t` (not their squares), as the reference does. Weight decay is
    decoupled by default.

    Paper: Choudhury et al., "Remove that Square Root: A New Efficient Scale-Invariant Version of AdaGrad",
    arXiv:2403.02648, 2024.

    Reference: ``pytorch_optimizer.Kate`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        delta: Weight :math:`\delta` of the extra :math:`g^2` term in :math:`m_t^2`, in [0, 1) (typically 0 or
            1e-8). Default ``0.0``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        eps: Term :math:`\epsilon` added to :math:`b_t^2` at every step (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "kate"
    family = "adaptive"
    reference = "pytorch_optimizer.Kate"
    # b' = sqrt(b^2) is not an input of p' (p' divides by b^2 itself), so mx.compile gives b' its own kernel and
    # materializes b^2 and g^2, each read by two kernels; only recomputing them would fuse further (mlx_optim.fusion)
    ops_per_leaf = 4

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        delta: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("delta", delta, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "m", "b")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        g_sq = mx.square(g)
        b_sq = mx.square(state["b"]) + g_sq + hp.eps
        m = mx.sqrt(mx.square(state["m"]) + hp.delta * g_sq + g_sq / b_sq)
        state["m"], state["b"] = m, mx.sqrt(b_sq)
        return p - hp.lr * (m * g / b_sq)
