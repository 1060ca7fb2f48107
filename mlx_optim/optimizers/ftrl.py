"""Follow The Regularized Leader, FTRL-Proximal (McMahan et al., 2013)."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def ftrl_step(
    g: mx.array,
    p: mx.array,
    z: mx.array,
    n: mx.array,
    lr: mx.array,
    lr_power: mx.array,
    beta: mx.array,
    lambda_1: mx.array,
    lambda_2: mx.array,
) -> tuple[mx.array, mx.array, mx.array]:
    """One FTRL-Proximal step; returns ``(p, z, n)``.

    The accumulator correction uses ``n ** -lr_power`` but the denominator uses ``sqrt(n)`` whatever
    ``lr_power`` is (pytorch_optimizer's formula).
    """
    new_n = n + mx.square(g)
    sigma = (mx.power(new_n, -lr_power) - mx.power(n, -lr_power)) / lr
    z = z + g - sigma * p
    de_nom = (mx.sqrt(new_n) + beta) / lr + lambda_2
    new_p = (F.sign(z) * lambda_1 - z) / de_nom
    return mx.where(mx.abs(z) <= lambda_1, mx.zeros_like(new_p), new_p), z, new_n


@register
class FTRL(Optimizer):
    r"""FTRL: Follow The Regularized Leader (FTRL-Proximal), with L1 and L2 regularization in closed form.

    Keeps the accumulated squared gradients ``n`` and the shifted gradient sum ``z``; the parameter is
    the closed-form minimiser of the linearised, L1/L2-regularised objective (zero where ``|z| <= lambda_1``).

    .. math::
        n_t = n_{t-1} + g_t^2,\quad
        \sigma_t = \frac{n_t^{-c} - n_{t-1}^{-c}}{\eta},\quad
        z_t = z_{t-1} + g_t - \sigma_t p_{t-1},\\
        p_t = \begin{cases} 0 & |z_t| \le \lambda_1 \\
        \frac{\operatorname{sign}(z_t)\lambda_1 - z_t}{(\sqrt{n_t} + \beta)/\eta + \lambda_2} & \text{else}
        \end{cases}

    with :math:`c` = ``lr_power``.

    Paper: "Ad Click Prediction: a View from the Trenches" (McMahan et al.), KDD 2013. Reference:
    ``pytorch_optimizer.FTRL``, same keywords and defaults. Reference quirk kept: the denominator uses
    ``sqrt(n)`` for every ``lr_power`` (Keras's FTRL uses ``n^-c``).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        lr_power: Exponent :math:`c` (<= 0) of the accumulator correction. Default ``-0.5``.
        beta: Offset :math:`\beta` (>= 0) in the denominator. Default ``0.0``.
        lambda_1: L1 regularization strength :math:`\lambda_1` (>= 0). Default ``0.0``.
        lambda_2: L2 regularization strength :math:`\lambda_2` (>= 0). Default ``0.0``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "ftrl"
    family = "other"
    reference = "pytorch_optimizer.FTRL"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        lr_power: Tunable = -0.5,
        beta: Tunable = 0.0,
        lambda_1: Tunable = 0.0,
        lambda_2: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lr_power", lr_power, None, 0.0)
        self._hyper("beta", beta, 0.0)
        self._hyper("lambda_1", lambda_1, 0.0)
        self._hyper("lambda_2", lambda_2, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "z", "n")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, state["z"], state["n"] = ftrl_step(
            g, p, state["z"], state["n"], hp.lr, hp.lr_power, hp.beta, hp.lambda_1, hp.lambda_2
        )
        return p
