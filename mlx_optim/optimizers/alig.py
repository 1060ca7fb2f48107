"""AliG, Adaptive Learning-rates for Interpolation with Gradients (Berrada et al., 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
from mlx.utils import tree_map

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.elementwise import loss_scalar
from mlx_optim.registry import register


def l2_projection(params: Any, max_norm: float = 1e2) -> Any:
    """pytorch_optimizer's ``l2_projection`` as a pure function of a parameter tree.

    Rescales every array by ``max_norm / ||params||`` when the global norm exceeds ``max_norm``.
    """
    global_norm = mx.sqrt(F.sum_of_squares(params))
    ratio = mx.where(global_norm > max_norm, max_norm / global_norm, 1.0)
    return tree_map(lambda p: (p * ratio).astype(p.dtype), params)


@register
class AliG(Optimizer):
    r"""AliG: a Polyak-type step size from the loss and the global gradient norm, capped at ``max_lr``.

    A Polyak-type step size from the loss and the global gradient norm, capped at
    ``max_lr``, with optional (Nesterov-style or PyTorch-style) momentum:

    .. math::
        \gamma_t = \min\Big(\frac{f(p_t)}{\lVert g_t\rVert^2 + 10^{-6}}, \eta_{max}\Big),\quad
        p \leftarrow p - \gamma_t g_t

    then, with momentum :math:`\mu`, either :math:`b \leftarrow \mu b - \gamma_t g_t,\ p \leftarrow p + \mu b`
    or (``adjusted_momentum``) :math:`b \leftarrow \mu b - g_t,\ p \leftarrow p + \gamma_t \mu b`.
    :math:`\lVert g_t\rVert^2` is the sum of squared norms over the whole gradient tree. It needs the loss:
    call ``opt.update(model, grads, loss=loss)`` or ``opt.step_with(model, loss_and_grad_fn, *batch)``. A
    negative loss gives a negative step, as in the reference.

    Paper: "Training Neural Networks for and by Interpolation" (Berrada et al.), ICML 2020. Reference:
    ``pytorch_optimizer.AliG``, same keywords and defaults; ``max_lr`` is stored as the tunable
    ``learning_rate`` (``inf`` when ``None``). The reference also projects the parameters once at construction;
    here that is up to the caller (apply ``projection_fn`` to the initial parameters).

    Args:
        max_lr: Cap :math:`\eta_{max}` (>= 0) of the step size: a float or a schedule (a callable of the step);
            ``None``: no cap. Default ``None``.
        projection_fn: ``projection_fn(params) -> params``, applied to the updated parameter tree after every
            step (e.g. ``functools.partial(l2_projection, max_norm=...)``); ``None``: no projection. Default
            ``None``.
        momentum: Momentum :math:`\mu` in [0, 1); 0 keeps no momentum buffer. Default ``0.0``.
        adjusted_momentum: Use the PyTorch-style momentum :math:`b \leftarrow \mu b - g_t` instead of the
            Nesterov-style one. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "alig"
    family = "learning-rate-free"
    reference = "pytorch_optimizer.AliG"
    shared_tunables = ("learning_rate",)  # the cap of the one step size computed in prepare
    needs_loss = True
    # the global gradient norm: a Square and a Sum per leaf (mx.compile fuses no reduction) and one more Add in the
    ops_per_leaf = 4  # (single, fused) scalar kernel that totals them, then the update kernel

    def __init__(
        self,
        max_lr: Tunable | None = None,
        projection_fn: Callable[[Any], Any] | None = None,
        momentum: Tunable = 0.0,
        adjusted_momentum: bool = False,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        if max_lr is not None and not callable(max_lr):
            self._check("max_lr", max_lr, 0.0)
        super().__init__(float("inf") if max_lr is None else max_lr, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self.projection_fn = projection_fn
        self.adjusted_momentum = adjusted_momentum
        self.use_momentum = float(momentum) > 0.0 if not callable(momentum) else True

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_momentum:
            state["momentum_buffer"] = self.zeros(parameter)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp = self.hp
        step_size = loss_scalar(hp) / (F.sum_of_squares(gradients) + 1e-6)
        hp.step_size = mx.minimum(step_size, hp.lr)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p = p - hp.step_size * g
        if self.use_momentum:
            if self.adjusted_momentum:
                buf = hp.momentum * state["momentum_buffer"] - g
                p = p + hp.step_size * hp.momentum * buf
            else:
                buf = hp.momentum * state["momentum_buffer"] - hp.step_size * g
                p = p + hp.momentum * buf
            state["momentum_buffer"] = buf
        return p

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        new = super().apply_gradients(gradients, parameters, loss=loss)
        return new if self.projection_fn is None else self.projection_fn(new)
