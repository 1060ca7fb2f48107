"""TAM: torque-aware momentum."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.norms import normalize_dim0
from mlx_optim.registry import register


@register
class TAM(Optimizer):
    r"""TAM: torque-aware momentum, SGD momentum whose gradient weight follows the gradient-momentum alignment.

    With :math:`\mathrm{n}(x)` the L2 normalization along the first axis and :math:`b_0 = g_1`:

    .. math::
        s_t = \rho s_{t-1} + (1-\rho)\,\mathrm{n}(b_{t-1})\odot\mathrm{n}(g_t),\quad
        b_t = \mu b_{t-1} + \Big(\frac{1+s_t}{2}+\epsilon\Big) g_t,\quad p_t = p_{t-1} - \eta b_t

    Paper: "Torque-Aware Momentum", arXiv:2412.18790, 2024.

    Reference: ``pytorch_optimizer.TAM`` (parity-checked). Reference quirk kept for parity: the L2 penalty
    (``weight_decouple=False``) is added to the gradient after the buffer was updated, so it has no effect.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Momentum factor :math:`\mu`, in [0, 1). Default ``0.9``.
        decay_rate: Decay rate :math:`\rho` of the alignment EMA :math:`s`, in [0, 1). Default ``0.9``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled weight decay, ``p * (1 - lr * weight_decay)``; ``False`` applies none
            (reference quirk above). Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        eps: Term added to the gradient weight (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "tam"
    family = "sgd"
    reference = "pytorch_optimizer.TAM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.9,
        decay_rate: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("decay_rate", decay_rate, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "s", "momentum_buffer")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        buf = mx.where(hp.step == 1, g, state["momentum_buffer"])  # the reference starts the buffer at g_1
        s = F.lerp(state["s"], normalize_dim0(buf) * normalize_dim0(g), hp.one_minus_decay_rate)
        buf = hp.momentum * buf + ((1.0 + s) / 2.0 + hp.eps) * g
        state["s"], state["momentum_buffer"] = s, buf
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p - hp.lr * buf
