"""Data-parallel training with any optimizer: average the gradients, then step identically everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from mlx_optim.core import OptimizerCore
from mlx_optim.distributed.core import Group, get_group, reduce_gradients

__all__ = ["DataParallel", "apply_inner"]


def apply_inner(inner: optim.Optimizer, gradients: Any, parameters: Any, loss: mx.array | None) -> Any:
    """``inner.apply_gradients`` passing ``loss`` where the optimizer takes it (mlx_optim optimizers)."""
    if isinstance(inner, OptimizerCore):
        return inner.apply_gradients(gradients, parameters, loss=loss)
    return inner.apply_gradients(gradients, parameters)


class _Delegating:
    """Shared plumbing of the distributed wrappers: ``state``, ``learning_rate`` and attribute reads go to ``inner``."""

    inner: optim.Optimizer
    group: Group

    @property
    def state(self) -> dict:
        """The inner optimizer's state dict (pass it to ``mx.compile`` as an input/output)."""
        return self.inner.state

    @state.setter
    def state(self, state: dict) -> None:
        self.inner.state = state

    @property
    def learning_rate(self) -> Any:
        return self.inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.inner.learning_rate = value

    @property
    def step(self) -> mx.array:
        return self.inner.state["step"]

    @property
    def needs_loss(self) -> bool:
        return bool(getattr(self.inner, "needs_loss", False))

    @property
    def rank(self) -> int:
        return self.group.rank()

    @property
    def world_size(self) -> int:
        return self.group.size()

    def __getattr__(self, name: str) -> Any:
        # only reached for names not found on the wrapper: hyperparameters, flags, ... of the inner optimizer
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def update(self, model: nn.Module, gradients: Any, loss: mx.array | None = None) -> None:
        """Apply this rank's ``gradients`` (of its share of the global batch) to ``model``."""
        model.update(self.apply_gradients(gradients, model, loss=loss))


class DataParallel(_Delegating):
    """Wrap any optimizer for data-parallel training over ``mx.distributed``.

    Every rank computes the gradient (and loss) of its own share of the global batch; ``update``
    averages them over the ranks with ``mlx.nn.average_gradients`` (``loss`` with ``all_sum``),
    optionally clips the averaged tree by its global norm (``max_grad_norm``, identical on every
    rank), and lets the wrapped optimizer take its ordinary step. The averaged gradient is the
    same on every rank, so parameters that start identical (:func:`broadcast_parameters`) stay
    identical after every step, and the optimizer's state is replicated.

    Works with every registered optimizer, those with global reductions (LAMB trust ratios,
    D-Adaptation, global norms) included, since each rank sees the whole averaged tree.
    Optimizers that evaluate the loss more than once per step (SAM family, L-BFGS, Hessian-based
    ones) use :meth:`step_with`, which averages every evaluation.

    ``opt.state`` is the inner optimizer's state dict, so
    ``mx.compile(step, inputs=[model.state, opt.state], outputs=[model.state, opt.state])`` works;
    other attribute reads (``opt.weight_decay``, ...) reach the inner optimizer.
    """

    def __init__(
        self,
        optimizer: optim.Optimizer,
        group: Group | None = None,
        *,
        max_grad_norm: float | None = None,
    ):
        if not isinstance(optimizer, optim.Optimizer):
            raise ValueError(f"DataParallel: optimizer={optimizer!r} must be an mlx.optimizers.Optimizer instance")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"DataParallel: max_grad_norm={max_grad_norm!r} must be > 0 or None")
        self.__dict__["inner"] = optimizer
        self.group = get_group(group)
        self.max_grad_norm = max_grad_norm

    def init(self, parameters: Any) -> None:
        self.inner.init(parameters)

    def apply_gradients(self, gradients: Any, parameters: Any, loss: mx.array | None = None) -> Any:
        """Average ``gradients`` / ``loss`` over the ranks and return the inner optimizer's updated parameters."""
        gradients, loss = reduce_gradients(gradients, loss, self.group, self.max_grad_norm)
        return apply_inner(self.inner, gradients, parameters, loss)

    def step_with(self, model: nn.Module, loss_and_grad_fn: Callable, *args: Any, **kwargs: Any) -> mx.array:
        """One step of the inner optimizer's ``step_with``, every loss/gradient evaluation averaged over the ranks.

        Returns the averaged (global-batch) loss of the first evaluation.
        """
        group, clip = self.group, self.max_grad_norm

        def averaged(model: nn.Module, *a: Any, **k: Any) -> tuple[mx.array, Any]:
            loss, grads = loss_and_grad_fn(model, *a, **k)
            grads, loss = reduce_gradients(grads, loss, group, clip)
            return loss, grads

        if isinstance(self.inner, OptimizerCore):
            return self.inner.step_with(model, averaged, *args, **kwargs)
        loss, grads = averaged(model, *args, **kwargs)
        model.update(self.inner.apply_gradients(grads, model))
        return loss
