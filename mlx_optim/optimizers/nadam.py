"""NAdam (Dozat, 2016) with torch.optim semantics: Adam with Nesterov momentum.

Classes: NAdam, NAdamW.
"""

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
    r"""NAdam (Dozat, 2016) with torch.optim semantics: Adam with Nesterov momentum.

    The momentum schedule is :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\,\psi})`
    with ``momentum_decay`` :math:`\psi`; the product :math:`\prod_i \mu_i` is kept
    in ``state["mu_product"]``.

    .. math::
        p_t = p_{t-1} - \eta \frac{1-\mu_t}{1-\prod_{i\le t}\mu_i} \frac{g_t}{d_t}
              - \eta \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i} \frac{m_t}{d_t},\quad
        d_t = \sqrt{v_t/(1-\beta_2^t)} + \epsilon
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
        self.state["mu_product"] = mx.array(1.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        def mu(t):
            return hp.beta1 * (1 - 0.5 * mx.power(mx.array(0.96, mx.float32), t * hp.momentum_decay))

        mu_t, mu_next = mu(hp.step), mu(hp.step + 1)
        mu_product = self.state["mu_product"] * mu_t
        self.state["mu_product"] = mu_product
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
    """NAdam with decoupled weight decay: ``torch.optim.NAdam(decoupled_weight_decay=True)``.

    ``p <- p (1 - lr wd)`` before the NAdam step (see :class:`~mlx_optim.optimizers.adam.NAdam`).
    Defaults follow the Keras seed / timm ``NAdamW`` (``learning_rate=1e-3``,
    ``weight_decay=1e-2``) because the torch reference is ``NAdam``, whose defaults
    (``lr=2e-3``, ``weight_decay=0``) describe plain NAdam; the seed's ``caution``
    option has no torch counterpart and is not offered.
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
