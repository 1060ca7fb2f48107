"""Shampoo: one inverse-root preconditioner per tensor dimension."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import gram, identity, inverse_root_svd
from mlx_optim.refresh import HostRefresh, every
from mlx_optim.registry import register


@register
class Shampoo(HostRefresh, Optimizer):
    r"""Shampoo: preconditioned SGD with one inverse-root preconditioner per tensor dimension.

    For a tensor of order :math:`k` with gradient :math:`G` (after momentum and weight decay), each dimension
    :math:`i` keeps :math:`H_i \mathrel{+}= G_{(i)} G_{(i)}^\top` (the mode-:math:`i` unfolding, :math:`H_i`
    starts at ``matrix_eps`` :math:`I`) and, every ``preconditioning_compute_steps`` steps,
    :math:`P_i = H_i^{-1/(2k)}`. The update is

    .. math::
        \tilde G = G \times_1 P_1 \times_2 P_2 \cdots \times_k P_k,\qquad p \leftarrow p - \eta \tilde G

    Momentum follows the reference exactly: :math:`G \leftarrow \mathrm{lerp}(G, b, \mu)` where the buffer
    :math:`b` is the *previous preconditioned* update (on the first step: the raw gradient, before
    ``maximize`` negates it -- a reference quirk kept for parity). The inverse root uses an SVD, which MLX
    only implements on the CPU: it is called with ``stream=mx.cpu`` and works inside ``mx.compile`` on every
    device. The roots are computed on refresh steps only (``apply_gradients`` reads the step counter on the host);
    inside your own ``mx.compile`` every step, selected with ``mx.where`` (the same numbers). With
    ``matrix_eps=1e-6`` the inverse root of a rank-deficient statistic (e.g. a vector's) is ill-conditioned in
    float32, in the reference as here.

    Paper: Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization", ICML 2018,
    arXiv:1802.09568.

    Reference: ``pytorch_optimizer.Shampoo`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Interpolation weight :math:`\mu` of the previous update, in [0, 1). Default ``0.0``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``False``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        preconditioning_compute_steps: Steps between inverse-root computations (>= 1). Default ``1``.
        matrix_eps: Initial value of the statistics, times the identity (>= 0). Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "shampoo"
    family = "preconditioned"
    reference = "pytorch_optimizer.Shampoo"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        preconditioning_compute_steps: int = 1,
        matrix_eps: float = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("preconditioning_compute_steps", preconditioning_compute_steps, 1)
        self._check("matrix_eps", matrix_eps, 0.0)
        self.weight_decouple = weight_decouple
        self.fixed_decay = fixed_decay
        self.preconditioning_compute_steps = int(preconditioning_compute_steps)
        self.matrix_eps = float(matrix_eps)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        dtype = self.state_dtype or self.compute_dtype(parameter)
        state["momentum_buffer"] = self.zeros(parameter)
        for i, d in enumerate(parameter.shape):
            state[f"pre_cond_{i}"] = self.matrix_eps * identity(d, dtype)
            state[f"inv_pre_cond_{i}"] = mx.zeros((d, d), dtype=dtype)

    def step_scalars(self, hp) -> None:
        self.refresh_scalars(hp)

    def refresh_flags(self, step):
        return {"refresh": every(step, self.preconditioning_compute_steps)}

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        # The reference's buffer starts as a clone of the first gradient, taken before maximize negates it.
        raw = -g if self.maximize else g
        buf = mx.where(hp.step == 1, raw, state["momentum_buffer"])
        g = F.lerp(g, buf, hp.momentum)
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple, fixed=self.fixed_decay)
        g = shampoo_precondition(g, state, self.refreshed)
        state["momentum_buffer"] = g
        return p - hp.lr * g


def shampoo_precondition(g: mx.array, state: dict, refreshed: Callable) -> mx.array:
    """Accumulate the per-dimension statistics of ``g`` in ``state`` and return the preconditioned ``g``.

    ``refreshed("refresh", new, old)`` picks the inverse roots of this step (:meth:`HostRefresh.refreshed`). The
    transposes mirror pytorch_optimizer's loop (``transpose_(0, i)`` then ``view(dim, -1)``).
    """
    shape, order = g.shape, g.ndim
    stats = g
    for i, d in enumerate(shape):
        u = mx.moveaxis(stats, i, 0).reshape(d, -1)
        pre = state[f"pre_cond_{i}"] + gram(u)
        inv = refreshed("refresh", partial(inverse_root_svd, pre, 2 * order), state[f"inv_pre_cond_{i}"])
        state[f"pre_cond_{i}"], state[f"inv_pre_cond_{i}"] = pre, inv
        g = mx.swapaxes(g, 0, i)
        transposed = g.shape
        g2 = g.reshape(d, -1)
        g = (g2.T @ inv).reshape(shape) if i == order - 1 else (inv @ g2).reshape(transposed)
    return g
