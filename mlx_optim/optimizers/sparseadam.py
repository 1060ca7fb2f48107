"""SparseAdam (torch.optim.SparseAdam) on dense MLX gradients."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class SparseAdam(Optimizer):
    r"""SparseAdam: Adam that updates only the entries with a non-zero gradient (``torch.optim.SparseAdam``).

    torch's SparseAdam takes sparse gradients and updates the moments and the parameter only at the
    gradient's indices (e.g. the embedding rows looked up in the batch). MLX has no sparse arrays, so here the
    index set is the set of *non-zero* gradient entries: where :math:`g_t = 0` the moments and the parameter
    stay untouched (rows not looked up have exactly zero gradient). Elsewhere:

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g_t,\quad v_t = \beta_2 v + (1-\beta_2) g_t^2,\quad
        p_t = p - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t} + \epsilon}

    (``eps`` is added to the uncorrected :math:`\sqrt{v_t}`, as in torch). The step count is global, as
    torch's per-parameter count is incremented on every step that parameter has a (possibly empty) gradient.

    Paper: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, arXiv:1412.6980.

    Reference: ``torch.optim.SparseAdam`` (parity-checked). Difference: an explicitly stored zero gradient
    is not distinguishable from a missing index (torch would decay the moments there).

    Args:
        learning_rate: Step size :math:`\eta` (> 0), a float or a schedule (a callable of the step).
            Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        eps: Term added to the denominator (> 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "sparseadam"
    family = "adam"
    reference = "torch.optim.SparseAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        if not callable(learning_rate):
            self._check("learning_rate", learning_rate, 0.0, None, "(]")
        self._hyper("eps", eps, 0.0, None, "(]")
        self._betas(betas, 2)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        seen = g != 0
        m = mx.where(seen, hp.ema(state["exp_avg"], g, "beta1"), state["exp_avg"])
        v = mx.where(seen, hp.ema(state["exp_avg_sq"], mx.square(g), "beta2"), state["exp_avg_sq"])
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return mx.where(seen, p - hp.step_size * m / (mx.sqrt(v) + hp.eps), p)
