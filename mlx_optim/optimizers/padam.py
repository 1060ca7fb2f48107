"""PAdam: partially adaptive Adam."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class PAdam(Optimizer):
    r"""PAdam: partially adaptive Adam, whose denominator is raised to ``2 * partial``.

    .. math::
        p_t = p_{t-1} - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t}
              \frac{m_t}{(\sqrt{v_t}+\epsilon)^{2p}}

    ``partial`` :math:`p \in (0, 1/2]` interpolates between SGD with momentum and Adam (``partial=0.5``). L2
    weight decay by default, as in the reference.

    Paper: Chen & Gu, "Closing the Generalization Gap of Adaptive Gradient Methods in Training Deep Neural
    Networks", IJCAI 2020, arXiv:1806.06763.

    Reference: ``pytorch_optimizer.PAdam`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-1``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        partial: Partial adaptivity :math:`p`, in (0, 1] (0.5 is Adam; the paper uses (0, 1/2]).
            Default ``0.25``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``False``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        eps: Term added to :math:`\sqrt{v_t}` (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "padam"
    family = "adam"
    reference = "pytorch_optimizer.PAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        partial: Tunable = 0.25,
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
        self._hyper("partial", partial, 0.0, 1.0, "(]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.step_size = hp.lr * bc2_sqrt / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = hp.ema(state["exp_avg"], g, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / mx.power(mx.sqrt(v) + hp.eps, 2 * hp.partial)
