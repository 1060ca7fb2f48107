"""Averaged SGD (Polyak & Juditsky, 1992), as ``torch.optim.ASGD``."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AveragedSGD(Optimizer):
    r"""AveragedSGD: SGD with a decaying step that keeps a running (Polyak) average of its iterates.

    SGD with a decaying step and a weight shrink; the running average of the
    iterates, started at step ``t0``, is kept in ``state[...]["ax"]`` (the
    model holds the SGD iterate, as in PyTorch):

    .. math::
        p_t = p_{t-1}(1 - \lambda \eta_t) - \eta_t (g_t + w p_{t-1}),\quad
        \eta_t = \frac{\eta}{(1 + \lambda \eta (t-1))^{\alpha}} \\
        \bar x_t = \bar x_{t-1} + \mu_t (p_t - \bar x_{t-1}),\quad \mu_t = 1/\max(1, t - 1 - t_0)

    with ``weight_decay`` :math:`w`.

    Paper: "Acceleration of Stochastic Approximation by Averaging" (Polyak & Juditsky), SIAM Journal on
    Control and Optimization, 1992. Reference: ``torch.optim.ASGD``, same keywords and defaults; torch's
    ``foreach``, ``differentiable`` and ``capturable`` execution options have no counterpart. Registered as
    ``averagedsgd`` because pytorch_optimizer's ``asgd`` is the adaptive :class:`ASGD`.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-2``.
        lambd: Decay term :math:`\lambda` of the step size and of the weight shrink. Default ``1e-4``.
        alpha: Power :math:`\alpha` of the step-size decay. Default ``0.75``.
        t0: Step at which averaging starts. Default ``1e6``.
        weight_decay: L2 penalty coefficient :math:`w` (>= 0) added to the gradient. Default ``0.0``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "averagedsgd"
    family = "sgd"
    reference = "torch.optim.ASGD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        lambd: Tunable = 1e-4,
        alpha: Tunable = 0.75,
        t0: Tunable = 1e6,
        weight_decay: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lambd", lambd)
        self._hyper("alpha", alpha)
        self._hyper("t0", t0)
        self._hyper("weight_decay", weight_decay, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["ax"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        prev = hp.step - 1  # torch computes eta and mu at the end of the previous step
        hp.eta = hp.lr / mx.power(1 + hp.lambd * hp.lr * prev, hp.alpha)
        hp.mu = 1.0 / mx.maximum(1.0, prev - hp.t0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        p = p * (1 - hp.lambd * hp.eta) - hp.eta * g
        ax = state["ax"]
        state["ax"] = mx.where(hp.mu == 1, p, ax + (p - ax) * hp.mu)
        return p
