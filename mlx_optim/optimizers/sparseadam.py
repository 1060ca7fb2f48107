"""SparseAdam (``torch.optim.SparseAdam``) on dense MLX gradients."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class SparseAdam(Optimizer):
    r"""SparseAdam (``torch.optim.SparseAdam``) on dense MLX gradients.

    torch's SparseAdam takes sparse gradients and updates the moments and the
    parameter only at the gradient's indices (e.g. the embedding rows looked up
    in the batch). MLX has no sparse arrays, so here the index set is the set of
    *non-zero* gradient entries: where :math:`g_t = 0` the moments and the
    parameter stay untouched (rows not looked up have exactly zero gradient).
    Unlike torch, an explicitly stored zero is therefore not distinguishable from
    a missing index (torch would decay the moments there). Elsewhere:

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g_t,\quad v_t = \beta_2 v + (1-\beta_2) g_t^2,\quad
        p_t = p - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t} + \epsilon}

    (``eps`` is added to the uncorrected :math:`\sqrt{v_t}`, as in torch). The
    step count is global, as torch's per-parameter count is incremented on every
    step that parameter has a (possibly empty) gradient.
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
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        seen = g != 0
        m = mx.where(seen, hp.ema(state["exp_avg"], g, "beta1"), state["exp_avg"])
        v = mx.where(seen, hp.ema(state["exp_avg_sq"], mx.square(g), "beta2"), state["exp_avg_sq"])
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return mx.where(seen, p - hp.step_size * m / (mx.sqrt(v) + hp.eps), p)
