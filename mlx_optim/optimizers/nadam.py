"""NAdam and NAdamW: Adam with Nesterov momentum, torch.optim semantics."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def adam_moments(g: mx.array, m: mx.array, v: mx.array, beta1, beta2) -> tuple[mx.array, mx.array]:
    """First and second moment EMAs: ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``."""
    return beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * mx.square(g)


@register
class NAdam(Optimizer):
    r"""NAdam: Adam with Nesterov momentum and a momentum warm-up schedule, with torch.optim semantics.

    The momentum schedule is :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\,\psi})` with ``momentum_decay``
    :math:`\psi`; the product :math:`\prod_i \mu_i` is kept in ``state["mu_product"]``.

    .. math::
        p_t = p_{t-1} - \eta \frac{1-\mu_t}{1-\prod_{i\le t}\mu_i} \frac{g_t}{d_t}
              - \eta \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i} \frac{m_t}{d_t},\quad
        d_t = \sqrt{v_t/(1-\beta_2^t)} + \epsilon

    Paper: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.

    Reference: ``torch.optim.NAdam`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``2e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        weight_decay: Weight decay coefficient (>= 0): L2 added to the gradient, or decoupled with
            ``decoupled_weight_decay``. Default ``0.0``.
        momentum_decay: Momentum decay :math:`\psi` of the schedule (>= 0). Default ``4e-3``.
        decoupled_weight_decay: Decoupled (AdamW-style) weight decay, ``p * (1 - lr * weight_decay)`` before
            the step (torch's NAdamW). Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated; keyword-only).
            Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "nadam"
    family = "adam"
    reference = "torch.optim.NAdam"

    def __init__(
        self,
        learning_rate: Tunable = 2e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        momentum_decay: Tunable = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum_decay", momentum_decay, 0.0)
        self.decoupled_weight_decay = decoupled_weight_decay
        self.globals["mu_product"] = mx.array(1.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        def mu(t):
            return hp.beta1 * (1 - 0.5 * mx.power(mx.array(0.96, mx.float32), t * hp.momentum_decay))

        mu_t, mu_next = mu(hp.step), mu(hp.step + 1)
        mu_product = self.globals["mu_product"] * mu_t
        self.globals["mu_product"] = mu_product
        hp.grad_coef = hp.lr * (1 - mu_t) / (1 - mu_product)
        hp.avg_coef = hp.lr * mu_next / (1 - mu_product * mu_next)
        hp.bc2 = hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.decoupled_weight_decay)
        m, v = adam_moments(g, state["exp_avg"], state["exp_avg_sq"], hp.beta1, hp.beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = mx.sqrt(v / hp.bc2) + hp.eps
        return p - (hp.grad_coef * g + hp.avg_coef * m) / denom


@register
class NAdamW(NAdam):
    r"""NAdamW: NAdam with decoupled weight decay, ``torch.optim.NAdam(decoupled_weight_decay=True)``.

    ``p <- p (1 - lr wd)`` before the NAdam step (see :class:`NAdam`).

    Paper: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop; decoupled weight decay
    from Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101.

    Reference: ``torch.optim.NAdam(decoupled_weight_decay=True)`` (parity-checked). Difference: the defaults
    follow timm's ``NAdamW`` (``learning_rate=1e-3``, ``weight_decay=1e-2``), because torch's NAdam defaults
    (``lr=2e-3``, ``weight_decay=0``) describe plain NAdam.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        weight_decay: Decoupled weight decay coefficient (>= 0). Default ``1e-2``.
        momentum_decay: Momentum decay :math:`\psi` of the schedule (>= 0). Default ``4e-3``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated; keyword-only).
            Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "nadamw"
    reference = "torch.optim.NAdam(decoupled_weight_decay=True)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 1e-2,
        momentum_decay: Tunable = 4e-3,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate,
            betas,
            eps,
            weight_decay,
            momentum_decay,
            decoupled_weight_decay=True,
            maximize=maximize,
            state_dtype=state_dtype,
        )
