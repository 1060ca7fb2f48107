"""AdaSmooth (Lu, 2022): a second-moment decay set by the per-coordinate effective ratio."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaSmooth(Optimizer):
    r"""AdaSmooth: RMSprop-like steps whose second-moment decay follows each coordinate's effective ratio.

    With the parameter change :math:`\Delta_t = p_t - p_{t-1}` accumulated as
    :math:`s_t = \sum \Delta`, :math:`n_t = \sum |\Delta|`,

    .. math::
        c_t = (\beta_2 - \beta_1) \frac{|s_t|}{n_t + \epsilon} + (1-\beta_2),\quad
        v_t = \operatorname{lerp}(v_{t-1}, g_t^2, c_t^2),\quad
        p_{t+1} = p_t - \frac{\eta}{\sqrt{v_t + \epsilon}} g_t

    (the reference measures :math:`\Delta` after its weight decay step).

    Paper: "AdaSmooth: An Adaptive Learning Rate Method based on Effective Ratio" (Lu, 2022),
    arXiv:2204.00825. Reference: ``pytorch_optimizer.AdaSmooth``, same keywords and defaults.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): the fast and slow bounds of the smoothing
            constant (the decay weight :math:`c_t` lies between :math:`1-\beta_2` and :math:`1-\beta_1`).
            Default ``(0.5, 0.99)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) in the effective ratio and under the square root. Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adasmooth"
    family = "adam"
    reference = "pytorch_optimizer.AdaSmooth"
    # p' <- v <- c <- |s| / (n + eps) <- s, n <- p - prev_param is 14 operations deep: mx.compile cuts it at
    # |s| and n + eps, and p - prev_param (read by both) becomes a third cut
    ops_per_leaf = 4

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.5, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["prev_param"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        self.zero_state(parameter, state, "s", "n", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.beta21, hp.c2 = hp.beta2 - hp.beta1, hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        diff = p - state["prev_param"]
        s = state["s"] + diff
        n = state["n"] + mx.abs(diff)
        c = mx.abs(s) / (n + hp.eps) * hp.beta21 + hp.c2
        v = F.lerp(state["exp_avg_sq"], mx.square(g), mx.square(c))
        state["s"], state["n"], state["exp_avg_sq"], state["prev_param"] = s, n, v, p
        return p - hp.lr / mx.sqrt(v + hp.eps) * g
