"""AdaBound (Luo et al., 2019): Adam whose per-coordinate step is clipped to bounds converging to SGD.

Classes: AdaBound, AdaBoundW.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaBound(Optimizer):
    r"""AdaBound (Luo et al., 2019): Adam whose per-coordinate step is clipped to bounds converging to SGD.

    .. math::
        \eta^*_t = \operatorname{clip}\!\Big(\frac{\eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{v_t}+\epsilon},
            \eta_l(t), \eta_u(t)\Big),\quad p_t = p_{t-1} - \eta^*_t m_t \\
        \eta_l(t) = \eta_f \big(1 - \tfrac{1}{\gamma t + 1}\big),\quad
        \eta_u(t) = \eta_f \big(1 + \tfrac{1}{\gamma t}\big),\quad
        \eta_f = \text{final\_lr} \cdot \eta / \eta_0

    :math:`\eta_0` is the initial learning rate (kept in ``state["base_lr"]``, so a
    learning-rate schedule scales ``final_lr`` as in the reference; an initial 0 is
    replaced by the first positive rate). ``ams_bound`` is AMSBound. Paper: "Adaptive
    Gradient Methods with Dynamic Bound of Learning Rate", ICLR 2019. Weight decay is
    decoupled by default as in the reference; the Keras seed's ``AdaBound`` uses L2
    (``weight_decouple=False``) and names the decoupled one ``AdaBoundW``. ``adam_debias`` drops the
    :math:`1-\beta_1^t` factor from the step size (AdamD); the reference reads it from the parameter group
    (``group.get("adam_debias")``): its constructor does not forward it.
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
        self.state["base_lr"] = mx.array(base_lr, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        base_lr = self.state["base_lr"]
        base_lr = mx.where((base_lr == 0) & (hp.lr > 0), hp.lr, base_lr)
        self.state["base_lr"] = base_lr
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
    """AdaBoundW: AdaBound with decoupled weight decay, as the Keras seed names it.

    Same math, parameters and defaults as :class:`AdaBound`, whose ``weight_decouple=True``
    default it inherits (reference: pytorch_optimizer's ``AdaBound`` with
    ``weight_decouple=True``, also that class's default); the seed's ``amsbound`` is
    ``ams_bound`` here.
    """

    name = "adaboundw"
    reference = "pytorch_optimizer.AdaBound(weight_decouple=True)"
