"""AdaBound and AdaBoundW (Luo et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaBound(Optimizer):
    r"""AdaBound: Adam whose per-coordinate step size is clipped to bounds that converge to SGD's.

    .. math::
        \eta^*_t = \operatorname{clip}\!\Big(\frac{\eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{v_t}+\epsilon},
            \eta_l(t), \eta_u(t)\Big),\quad p_t = p_{t-1} - \eta^*_t m_t \\
        \eta_l(t) = \eta_f \big(1 - \tfrac{1}{\gamma t + 1}\big),\quad
        \eta_u(t) = \eta_f \big(1 + \tfrac{1}{\gamma t}\big),\quad
        \eta_f = \text{final\_lr} \cdot \eta / \eta_0

    :math:`m_t`, :math:`v_t` are Adam's moment EMAs. :math:`\eta_0` is the initial learning rate (kept in
    ``state["base_lr"]``, so a learning-rate schedule scales ``final_lr`` as in the reference; an initial 0 is
    replaced by the first positive rate). ``adam_debias`` drops the :math:`1-\beta_1^t` factor from the step size
    (AdamD); the reference reads it from the parameter group (``group.get("adam_debias")``): its constructor does
    not forward it.

    Paper: "Adaptive Gradient Methods with Dynamic Bound of Learning Rate" (Luo et al.), ICLR 2019.
    Reference: ``pytorch_optimizer.AdaBound``, same keywords and defaults.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        final_lr: The SGD step size :math:`\eta_f` both bounds converge to (for the initial learning rate;
            scaled with it). Default ``0.1``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        gamma: Convergence speed :math:`\gamma` (> 0) of the bound functions. Default ``1e-3``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        ams_bound: AMSBound: use the running maximum of :math:`v_t`. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Drop the :math:`1-\beta_1^t` bias correction from the step size. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adabound"
    family = "adam"
    reference = "pytorch_optimizer.AdaBound"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        final_lr: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        gamma: Tunable = 1e-3,
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
        self.adam_debias = adam_debias
        self._hyper("final_lr", final_lr)
        self._betas(betas, 2)
        self._hyper("gamma", gamma, 0.0, None, "(]")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound
        base_lr = learning_rate(mx.array(0)) if callable(learning_rate) else learning_rate
        self.globals["base_lr"] = mx.array(base_lr, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", ams="max_exp_avg_sq" if self.ams_bound else None)

    def step_scalars(self, hp) -> None:
        base_lr = self.globals["base_lr"]
        base_lr = mx.where((base_lr == 0) & (hp.lr > 0), hp.lr, base_lr)
        self.globals["base_lr"] = base_lr
        final_lr = mx.where(base_lr > 0, hp.final_lr * hp.lr / mx.where(base_lr > 0, base_lr, 1.0), 0.0)
        hp.lower_bound = final_lr * (1 - 1 / (hp.gamma * hp.step + 1))
        hp.upper_bound = final_lr * (1 + 1 / (hp.gamma * hp.step))
        bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.step_size = hp.lr * bc2_sqrt if self.adam_debias else hp.lr * bc2_sqrt / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = hp.ema(state["exp_avg"], g, "beta1"), hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        step = mx.clip(hp.step_size / F.ams_bound_denom(v, hp.eps), hp.lower_bound, hp.upper_bound)
        return p - step * m


@register
class AdaBoundW(AdaBound):
    r"""AdaBoundW: AdaBound with decoupled weight decay, registered under its own name.

    Same math, arguments and defaults as :class:`AdaBound`, whose ``weight_decouple=True`` default it
    inherits. Reference: pytorch_optimizer's ``AdaBound`` with ``weight_decouple=True`` (also that class's
    default).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        final_lr: The SGD step size :math:`\eta_f` both bounds converge to (for the initial learning rate;
            scaled with it). Default ``0.1``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        gamma: Convergence speed :math:`\gamma` (> 0) of the bound functions. Default ``1e-3``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        ams_bound: AMSBound: use the running maximum of :math:`v_t`. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Drop the :math:`1-\beta_1^t` bias correction from the step size. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adaboundw"
    reference = "pytorch_optimizer.AdaBound(weight_decouple=True)"
