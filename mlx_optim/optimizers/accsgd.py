"""AccSGD (Kidambi et al., 2018): accelerated SGD coupling a short and a long step."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, state_copy
from mlx_optim.registry import register


@register
class AccSGD(Optimizer):
    r"""AccSGD: accelerated SGD that couples a short gradient step with a long momentum step.

    With :math:`\beta = \xi c^2/\kappa`, :math:`\bar\eta = \eta\kappa/c` and :math:`\zeta = c/(c+\beta)`:

    .. math::
        b_t = \beta\big((1/\beta - 1) b_{t-1} - \bar\eta g_t + p_{t-1}\big),\quad
        p_t = \operatorname{lerp}(p_{t-1} - \eta g_t,\; b_t,\; 1-\zeta)

    The buffer :math:`b` starts at the initial parameters; ``weight_decay`` is an L2 penalty added to the
    gradient.

    Paper: "On the insufficiency of existing momentum schemes for Stochastic Optimization" (Kidambi et al.),
    ICLR 2018. Reference: ``pytorch_optimizer.AccSGD``, same keywords and defaults.

    Args:
        learning_rate: Short step size :math:`\eta`: a float or a schedule (a callable of the step). Default
            ``1e-3``.
        kappa: Long-step parameter :math:`\kappa` (> 0), the ratio of the long to the short step. Default
            ``1000.0``.
        xi: Statistical advantage parameter :math:`\xi` (>= 0). Default ``10.0``.
        constant: Small constant :math:`c` (<= 1, > 0). Default ``0.7``.
        weight_decay: L2 penalty coefficient (>= 0) added to the gradient. Default ``0.0``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "accsgd"
    family = "sgd"
    reference = "pytorch_optimizer.AccSGD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        kappa: Tunable = 1000.0,
        xi: Tunable = 10.0,
        constant: Tunable = 0.7,
        weight_decay: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("kappa", kappa, 0.0)
        self._hyper("xi", xi, 0.0)
        self._hyper("constant", constant, None, 1.0)
        self._hyper("weight_decay", weight_decay, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = state_copy(self, parameter)

    def step_scalars(self, hp) -> None:
        hp.large_lr = hp.lr * hp.kappa / hp.constant
        hp.beta = hp.xi * hp.constant**2 / hp.kappa  # 1 - alpha, computed without cancellation
        hp.zeta = hp.constant / (hp.constant + hp.beta)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        buf = hp.beta * ((1.0 / hp.beta - 1.0) * state["momentum_buffer"] - hp.large_lr * g + p)
        state["momentum_buffer"] = buf
        return F.lerp(p - hp.lr * g, buf, 1.0 - hp.zeta)
