"""SWATS: switching from Adam to SGD."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class SWATS(Optimizer):
    r"""SWATS: Adam that switches for good to momentum SGD once the projected SGD learning rate has converged.

    Adam steps
    :math:`\delta_t = -\eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\frac{m_t}{\sqrt{v_t + 10^{-15}} + \epsilon}`
    while tracking the projected SGD learning rate

    .. math::
        \gamma_t = \frac{\delta_t^\top\delta_t}{-\delta_t^\top g_t},\quad
        \lambda_t = \beta_2 \lambda_{t-1} + (1-\beta_2)\gamma_t

    per tensor. After the first step on which some tensor has :math:`\lambda_t/(1-\beta_2^t) > 0` within
    relative ``eps`` (and absolute 1e-8) of :math:`\gamma_t`, all tensors switch for good to SGD with
    momentum :math:`b_t = \beta_1 b_{t-1} + g_t`, step :math:`-\lambda (1-\beta_1) b_t` (plus
    :math:`\beta_1 b_t` with ``nesterov``), :math:`\lambda` taken from the last such tensor. The phase and
    the SGD rate are global state (``state["sgd_phase"]``, ``state["sgd_lr"]``); after the switch, decoupled
    weight decay also uses the SGD rate, as in the reference.

    Paper: Keskar & Socher, "Improving Generalization Performance by Switching from Adam to SGD",
    arXiv:1712.07628, 2017.

    Reference: ``pytorch_optimizer.SWATS`` (parity-checked). ``adam_debias`` is read by the reference only
    from a parameter group; here it is a keyword.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``False``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        ams_bound: Divide by the running maximum of the second moment (AMSGrad) during the Adam phase.
            Default ``False``.
        nesterov: Nesterov momentum in the SGD phase. Default ``False``.
        eps: Term added to the denominator, and the relative tolerance of the switch test (>= 0). Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the Adam step size by :math:`1-\beta_1^t` (keyword-only). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "swats"
    family = "adam"
    reference = "pytorch_optimizer.SWATS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        nesterov: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.ams_bound, self.nesterov, self.adam_debias = ams_bound, nesterov, adam_debias
        self.globals["sgd_phase"] = mx.array(False)
        self.globals["sgd_lr"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
        state["exp_avg2"] = mx.zeros((), mx.float32)
        self.zero_state(parameter, state, "momentum_buffer", ams="max_exp_avg_sq" if self.ams_bound else None)

    def step_scalars(self, hp) -> None:
        hp.sgd = self.globals["sgd_phase"]
        hp.group_lr = mx.where(hp.sgd, self.globals["sgd_lr"], hp.lr)
        hp.bc2 = hp.bias_correction("beta2")
        step_size = hp.lr * mx.sqrt(hp.bc2)
        hp.step_size = step_size if self.adam_debias else step_size / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g, lr=hp.group_lr)
        # SGD phase
        buf = hp.beta1 * state["momentum_buffer"] + g
        sgd_update = buf * hp.one_minus_beta1
        if self.nesterov:
            sgd_update = sgd_update + hp.beta1 * buf
        state["momentum_buffer"] = mx.where(hp.sgd, buf, state["momentum_buffer"])
        # Adam phase
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        v_hat = v
        if self.ams_bound:
            v_hat = mx.maximum(state["max_exp_avg_sq"], v)
            state["max_exp_avg_sq"] = mx.where(hp.sgd, state["max_exp_avg_sq"], v_hat)
        perturb = -hp.step_size * m / F.ams_bound_denom(v_hat, hp.eps)
        state["exp_avg"] = mx.where(hp.sgd, state["exp_avg"], m)
        state["exp_avg_sq"] = mx.where(hp.sgd, state["exp_avg_sq"], v)
        # the projected SGD learning rate and the switch decision
        pg = mx.sum(perturb * g)
        valid = (pg != 0) & ~hp.sgd
        scaling = mx.sum(mx.square(perturb)) / mx.where(valid, -pg, 1.0)
        avg = mx.where(valid, F.lerp(state["exp_avg2"], scaling, hp.one_minus_beta2), state["exp_avg2"])
        state["exp_avg2"] = avg
        corrected = avg / hp.bc2
        close = mx.abs(corrected - scaling) <= 1e-8 + hp.eps * mx.abs(scaling)  # torch.allclose(rtol=eps)
        switch = valid & (hp.step > 1) & (corrected > 0) & close
        self.globals["sgd_lr"] = mx.where(switch, corrected, self.globals["sgd_lr"])
        self.globals["sgd_phase"] = self.globals["sgd_phase"] | switch
        return mx.where(hp.sgd, p - hp.group_lr * sgd_update, p + perturb)
