"""AggMo (Lucas et al., 2019): aggregated momentum."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AggMo(Optimizer):
    r"""AggMo: SGD averaging several momentum buffers with different decay rates.

    .. math:: b^{(i)}_t = \beta_i b^{(i)}_{t-1} + g_t,\quad p_t = p_{t-1} - \frac{\eta}{K}\sum_{i=1}^K b^{(i)}_t

    Any number :math:`K` of betas; buffer ``i`` is the state entry ``momentum_buffer_{i}``.

    Paper: "Aggregated Momentum: Stability Through Passive Damping" (Lucas et al.), ICLR 2019. Reference:
    ``pytorch_optimizer.AggMo``, same keywords, defaults and validation.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: The decay rates :math:`\beta_i` (at least two), validated as in the reference: the first two in
            [0, 1), the third in [0, 1], later ones unchecked. Default ``(0.0, 0.9, 0.99)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "aggmo"
    family = "sgd"
    reference = "pytorch_optimizer.AggMo"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.0, 0.9, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) < 2:
            raise ValueError(f"AggMo: betas={betas!r} must have at least 2 values")
        for i, b in enumerate(betas):
            bounds = (0.0, 1.0, "[)") if i < 2 else (0.0, 1.0, "[]") if i == 2 else (None, None, "[]")
            self._hyper(f"beta{i + 1}", b, *bounds)
        self.n_betas = len(betas)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        for i in range(self.n_betas):
            state[f"momentum_buffer_{i}"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        step_size = hp.lr / self.n_betas
        for i in range(self.n_betas):
            buf = getattr(hp, f"beta{i + 1}") * state[f"momentum_buffer_{i}"] + g
            state[f"momentum_buffer_{i}"] = buf
            p = p - step_size * buf
        return p
