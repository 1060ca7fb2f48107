"""AvaGrad (Savarese et al., 2021): Adam with a delayed second moment and a global step scale."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register


@register
class AvaGrad(Optimizer):
    r"""AvaGrad: Adam with a one-step-delayed second moment and a global step-size normalization.

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        d_t = \sqrt{v_{t-1}}/\sqrt{1-\beta_2^{t-1}} + \epsilon,\quad
        p_t = p_{t-1} - \frac{\gamma_{t-1}\eta}{1-\beta_1^t}\,\frac{m_t}{d_t}\ (t > 1) \\
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        \gamma_t = \Big(\operatorname{mean}_{\text{all params}}
        \big(\sqrt{v_{t-1}}/\sqrt{1-\beta_2^t} + \epsilon\big)^{-2}\Big)^{-1/2}

    The first step only updates the moments. :math:`\gamma` is a global scalar
    (``state["gamma"]``), computed over the whole tree in :meth:`prepare`; as in the
    reference it uses :math:`v_{t-1}` with the step-:math:`t` bias correction.

    Paper: "Domain-independent Dominance of Adaptive Methods" (Savarese et al.), CVPR 2021, arXiv:1912.01823.
    Reference: ``pytorch_optimizer.AvaGrad``, same keywords and defaults; its ``adam_debias`` option
    (``**kwargs``) is a keyword-only argument here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``0.1``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``0.1``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "avagrad"
    family = "adam"
    reference = "pytorch_optimizer.AvaGrad"
    shared_tunables = ("beta2", "eps")  # the global step-size normalizer gamma is computed in prepare

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-1,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.adam_debias = adam_debias
        self.globals["gamma"] = mx.array(1.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        step_size = self.globals["gamma"] * hp.lr
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.prev_bc2_sqrt = mx.sqrt(hp.bias_correction("beta2", hp.step - 1))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp = self.hp
        inv_sq, count = mx.array(0.0, mx.float32), 0
        for _, _, _, state in leaves(gradients, parameters, self.state):
            param_wise_lr = mx.sqrt(state["exp_avg_sq"].astype(mx.float32)) / hp.bc2_sqrt + hp.eps
            inv_sq = inv_sq + mx.sum(1.0 / mx.square(param_wise_lr))
            count += state["exp_avg_sq"].size
        self.globals["gamma"] = mx.rsqrt(inv_sq / max(count, 1))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v_prev = state["exp_avg_sq"]
        state["exp_avg"] = m
        state["exp_avg_sq"] = hp.beta2 * v_prev + hp.one_minus_beta2 * mx.square(g)
        new_p = p - hp.step_size * m / (mx.sqrt(v_prev) / hp.prev_bc2_sqrt + hp.eps)
        return mx.where(hp.step > 1, new_p, p)
