"""NovoGrad: layer-wise second moments with gradient normalization."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class NovoGrad(Optimizer):
    r"""NovoGrad: SGD with momentum on gradients normalized by a layer-wise second moment.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\|g_t\|^2 \;(v_1 = \|g_1\|^2),\quad
        \hat g_t = \frac{g_t}{\sqrt{v_t} + \epsilon} \,(+\, \lambda p),\quad
        m_t = \beta_1 m_{t-1} + \hat g_t \;(m_1 = \hat g_1),\quad p_t = p_{t-1} - \eta m_t

    With ``grad_averaging`` the new term is scaled by :math:`1-\beta_1` (not on the first step);
    ``adam_debias`` multiplies the step by :math:`\sqrt{1-\beta_2^t}`. :math:`v_t` is one scalar per tensor.

    Paper: Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of
    Deep Networks", arXiv:1905.11286, 2019.

    Reference: ``pytorch_optimizer.NovoGrad`` (parity-checked), including its ``adam_debias`` option
    (keyword-only here).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``: momentum factor and decay rate of the layer-wise second moment, each in
            [0, 1). Default ``(0.95, 0.98)``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            :math:`\lambda p` to the normalized gradient. Default ``False``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        grad_averaging: Scale the new term of the momentum by :math:`1-\beta_1`. Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Multiply the step size by :math:`\sqrt{1-\beta_2^t}` (keyword-only). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "novograd"
    family = "adam"
    # ||g||^2 (Square + Sum + Squeeze); the 0-d EMA of it is a state output of its own shape (own kernel); the step
    ops_per_leaf = 5
    reference = "pytorch_optimizer.NovoGrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.95, 0.98),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        grad_averaging: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.grad_averaging, self.adam_debias = grad_averaging, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grads_ema"] = mx.zeros((), mx.float32)
        state["moments"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) if self.adam_debias else hp.lr

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g_sq = mx.sum(mx.square(g))
        ema = mx.where(hp.first, g_sq, F.lerp(state["grads_ema"], g_sq, hp.one_minus_beta2))
        state["grads_ema"] = ema
        g = g / (mx.sqrt(ema) + hp.eps)
        p, g = self.decay_weights(p, g)
        new_term = g * hp.one_minus_beta1 if self.grad_averaging else g
        m = mx.where(hp.first, g, hp.beta1 * state["moments"] + new_term)
        state["moments"] = m
        return p - hp.step_size * m
