"""Loss-and-gradient functions for ``Optimizer.step_with``.

``mlx_optim.value_and_grad(model, loss_fn)`` behaves like ``nn.value_and_grad``
(call it as ``fn(model, *batch)`` to get ``(loss, grads)``) and also keeps the
model and the plain ``loss_fn``, which optimizers that need more than a gradient
(Hessian-vector products, re-evaluation at perturbed weights) use. With
``compile=True`` the evaluation is ``mx.compile``d with the model's arrays
captured, for optimizers that cannot themselves run inside ``mx.compile``
(L-BFGS) but whose loss evaluations can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn

__all__ = ["LossAndGrad", "value_and_grad"]


class LossAndGrad:
    """``fn(model, *args, **kwargs) -> (loss, grads)`` for ``loss_fn(model, *args, **kwargs)``."""

    def __init__(self, model: nn.Module, loss_fn: Callable, *, compile: bool = False):
        self.model = model
        self.loss_fn = loss_fn
        vg = nn.value_and_grad(model, loss_fn)
        if compile:
            compiled = mx.compile(lambda *a, **kw: vg(model, *a, **kw), inputs=model.state, outputs=model.state)
            self._fn = lambda model_, *a, **kw: compiled(*a, **kw)
        else:
            self._fn = vg
        self.__doc__ = getattr(loss_fn, "__doc__", None)

    def __call__(self, model: nn.Module, *args: Any, **kwargs: Any) -> tuple[mx.array, dict]:
        if model is not self.model:
            raise ValueError("this loss-and-grad function was built for another model")
        return self._fn(model, *args, **kwargs)


def value_and_grad(model: nn.Module, loss_fn: Callable, *, compile: bool = False) -> LossAndGrad:
    """Like ``nn.value_and_grad(model, loss_fn)``, keeping ``loss_fn`` for optimizers that need it."""
    return LossAndGrad(model, loss_fn, compile=compile)
