"""Adaptive SGD without descent (Malitsky & Mishchenko, 2020)."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register


@register
class ASGD(Optimizer):
    r"""ASGD: adaptive gradient descent without descent, SGD whose step size follows the local smoothness.

    The learning rate is adapted every step from the change of the global
    parameter norm and gradient norm (differences of *norms*, as in the
    reference), then a plain SGD step is taken:

    .. math::
        \eta_t = \eta_{t-1}\sqrt{1 + a\,\theta_{t-1}},\quad
        \eta_t \leftarrow \min\!\Big(\eta_t, \frac{\Delta\lVert p\rVert}{d\,\Delta\lVert g\rVert}\Big) + \epsilon
        \ \text{ if both differences are } > 0,\quad
        \theta_t = \eta_t / \eta_{t-1},\quad p_t = p_{t-1} - \eta_t g_t

    with ``amplifier`` :math:`a` and ``dampening`` :math:`d`. The adapted value lives in
    ``state["current_lr"]``. Weight decay is decoupled by default and uses :math:`\eta_t`.

    Paper: "Adaptive Gradient Descent without Descent" (Malitsky & Mishchenko), ICML 2020. Reference:
    ``pytorch_optimizer.ASGD``, same keywords and defaults. Not ``torch.optim.ASGD`` (averaged SGD): that one
    is :class:`AveragedSGD`.

    Args:
        learning_rate: Initial step size :math:`\eta_0` (read on the first step): a float or a schedule (a
            callable of the step). Default ``1e-2``.
        amplifier: Growth coefficient :math:`a` (>= 0) of the step size per step. Default ``0.02``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled decay ``p <- p (1 - eta_t wd)`` instead of an L2 penalty added to the
            gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the step size. Default ``False``.
        theta (float): Initial ratio :math:`\theta_0` of consecutive step sizes. Default ``1.0``.
        dampening: Scale :math:`d` of the local-smoothness bound. Default ``1.0``.
        eps: :math:`\epsilon` (>= 0) added to the bounded step size. Default ``1e-5``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "asgd"
    family = "sgd"
    reference = "pytorch_optimizer.ASGD"
    shared_tunables = ("learning_rate", "amplifier", "dampening", "eps")  # one adaptive lr, from global norms
    # the update is one kernel; the global norms of p and g are reductions (Square and Sum each, not fusable) and
    # the chains summing the leaves' norms (per-step scalars) change kernels with the number of leaves
    ops_per_leaf = 7

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        amplifier: Tunable = 0.02,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        theta: float = 1.0,
        dampening: Tunable = 1.0,
        eps: Tunable = 1e-5,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("amplifier", amplifier, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._check("theta", theta)
        self._hyper("dampening", dampening)
        self._hyper("eps", eps, 0.0)
        self.globals["theta"] = mx.array(float(theta), mx.float32)
        self.globals["current_lr"] = mx.array(0.0, mx.float32)
        self.globals["prev_param_norm"] = mx.array(0.0, mx.float32)
        self.globals["prev_grad_norm"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        pass

    def prepare(self, gradients, parameters) -> None:
        hp, s = self.hp, self.globals
        items = leaves(gradients, parameters, self.state)
        p_norm = F.global_norm([p for _, _, p, _ in items])
        g_norm = F.global_norm([g for _, g, _, _ in items])
        first = hp.step == 1
        lr = mx.where(first, hp.lr, s["current_lr"])
        param_diff = p_norm - mx.where(first, p_norm, s["prev_param_norm"])
        grad_diff = g_norm - mx.where(first, g_norm, s["prev_grad_norm"])
        new_lr = lr * mx.sqrt(1 + hp.amplifier * s["theta"])
        bound = param_diff / (hp.dampening * mx.where(grad_diff > 0, grad_diff, 1.0))
        new_lr = mx.where((param_diff > 0) & (grad_diff > 0), mx.minimum(new_lr, bound) + hp.eps, new_lr)
        s["theta"], s["current_lr"] = new_lr / lr, new_lr
        s["prev_param_norm"], s["prev_grad_norm"] = p_norm, g_norm
        hp.asgd_lr = new_lr

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        lr = self.hp.asgd_lr
        p, g = self.decay_weights(p, g, lr=lr)
        return p - lr * g
