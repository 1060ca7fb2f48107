"""AdaNorm (Dubey et al., 2023): Adam fed with gradients rescaled to their running norm."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaNorm(Optimizer):
    r"""AdaNorm: Adam whose first moment is fed gradients rescaled up to their running average norm.

    .. math::
        e_t = r e_{t-1} + (1-r)\lVert g_t\rVert,\quad
        \tilde g_t = \begin{cases} g_t\, e_t/\lVert g_t\rVert & e_t > \lVert g_t\rVert \\ g_t \end{cases} \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\tilde g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\frac{m_t\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}

    The norm :math:`e_t` is kept per tensor.

    Paper: "AdaNorm: Adaptive Gradient Norm Correction based Optimizer for CNNs" (Dubey et al.), WACV 2023.
    Reference: ``pytorch_optimizer.AdaNorm``, same keywords and defaults; its ``adam_debias`` option
    (``**kwargs``) is a keyword-only argument here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.99)``.
        r: Decay rate :math:`r` of the running gradient norm (0.9 to 0.99 works best). Default ``0.95``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        ams_bound: Use the running maximum of :math:`v_t` (AMSGrad). Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adanorm"
    family = "adam"
    reference = "pytorch_optimizer.AdaNorm"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.99),
        r: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("r", r)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound
        self.adam_debias = adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_var"] = self.zeros(parameter)
        state["exp_grad_norm"] = mx.zeros((), mx.float32)
        if self.ams_bound:
            state["max_exp_avg_var"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        s_grad = self.apply_adanorm(g, state, hp.r, key="exp_grad_norm")
        m, v = hp.ema(state["exp_avg"], s_grad, "beta1"), hp.ema(state["exp_avg_var"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_var"] = m, v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v, "max_exp_avg_var")
        return p - hp.step_size * m / (F.ams_bound_denom(v, hp.eps) / hp.bc2_sqrt)
