"""Loss-and-gradient functions for ``Optimizer.step_with``.

``mlx_optim.value_and_grad(model, loss_fn)`` behaves like ``nn.value_and_grad``
(call it as ``fn(model, *batch)`` to get ``(loss, grads)``) and also keeps the
model and the plain ``loss_fn``, which optimizers that need more than a gradient
(Hessian-vector products, re-evaluation at perturbed weights) use:
:meth:`LossAndGrad.hvp` (Hessian-vector products by forward-over-reverse
``mx.jvp`` of the gradient, for AdaHessian / SophiaH) and
:meth:`LossAndGrad.gnb` (Sophia-G's Gauss-Newton-Bartlett estimate, which needs a
``logits_fn``). With
``compile=True`` the evaluation is ``mx.compile``d with the model's arrays
captured, for optimizers that cannot themselves run inside ``mx.compile``
(L-BFGS) but whose loss evaluations can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

__all__ = ["LossAndGrad", "value_and_grad"]


class LossAndGrad:
    """``fn(model, *args, **kwargs) -> (loss, grads)`` for ``loss_fn(model, *args, **kwargs)``."""

    def __init__(
        self, model: nn.Module, loss_fn: Callable, *, compile: bool = False, logits_fn: Callable | None = None
    ):
        self.model = model
        self.loss_fn = loss_fn
        self.logits_fn = logits_fn
        vg = nn.value_and_grad(model, loss_fn)
        if compile:
            compiled = mx.compile(lambda *a, **kw: vg(model, *a, **kw), inputs=model.state, outputs=model.state)
            self._fn = lambda model_, *a, **kw: compiled(*a, **kw)
        else:
            self._fn = vg
        self.__doc__ = getattr(loss_fn, "__doc__", None)

    def _check_model(self, model: nn.Module) -> None:
        if model is not self.model:
            raise ValueError("this loss-and-grad function was built for another model")

    def __call__(self, model: nn.Module, *args: Any, **kwargs: Any) -> tuple[mx.array, dict]:
        self._check_model(model)
        return self._fn(model, *args, **kwargs)

    def hvp(self, model: nn.Module, vectors: Any, *args: Any, **kwargs: Any) -> tuple[mx.array, Any, Any]:
        """``(loss, grads, hvps)``: the loss, its gradient and the Hessian-vector products ``H v``.

        ``vectors`` is a tree shaped like ``model.trainable_parameters()``. One
        forward-over-reverse pass: ``mx.jvp`` of the gradient function in the
        direction ``vectors`` (the parameter trees are flattened to lists for
        ``mx.jvp``). Works inside ``mx.compile``.
        """
        self._check_model(model)
        params = model.trainable_parameters()
        flat = tree_flatten(params)
        names = [k for k, _ in flat]
        given = dict(tree_flatten(vectors))
        if set(given) != set(names):
            missing = sorted(set(names) - set(given)) or sorted(set(given) - set(names))
            raise ValueError(f"hvp: the vectors do not match the trainable parameters at '{missing[0]}'")
        tangents = []
        for k, v in flat:
            t = given[k]
            if t.shape != v.shape:
                raise ValueError(f"hvp: vector at '{k}' has shape {tuple(t.shape)}, the parameter {tuple(v.shape)}")
            tangents.append(t.astype(v.dtype))

        def loss_of(arrays):
            model.update(tree_unflatten(list(zip(names, arrays))))
            return self.loss_fn(model, *args, **kwargs)

        value_and_grad = mx.value_and_grad(loss_of)

        def loss_and_grads(*arrays):
            loss, grads = value_and_grad(list(arrays))
            return [loss, *grads]

        try:
            outs, dirs = mx.jvp(loss_and_grads, [v for _, v in flat], tangents)
        finally:
            model.update(params)
        return (
            outs[0],
            tree_unflatten(list(zip(names, outs[1:]))),
            tree_unflatten(list(zip(names, dirs[1:]))),
        )

    def gnb(self, model: nn.Module, key: mx.array, *args: Any, **kwargs: Any) -> tuple[mx.array, Any, Any]:
        """``(loss, grads, h)``: loss and gradient, and Sophia's Gauss-Newton-Bartlett estimate ``h``.

        ``h = B * g_s * g_s`` where ``g_s`` is the gradient of the mean cross-entropy
        of ``logits_fn(model, *args, **kwargs)`` (classes on the last axis) against
        labels sampled from the model's own softmax with ``key``, and ``B`` the number
        of sampled labels (Liu et al., 2023, Algorithm 2). Its expectation is the
        diagonal of the Gauss-Newton matrix of the mean cross-entropy.
        """
        self._check_model(model)
        if self.logits_fn is None:
            raise TypeError(
                "the Gauss-Newton-Bartlett estimate needs the model's logits: build the function with "
                "mlx_optim.value_and_grad(model, loss_fn, logits_fn=lambda model, *batch: logits)"
            )
        loss, grads = self(model, *args, **kwargs)
        count = []

        def sampled_loss(model_, *a, **kw):
            logits = self.logits_fn(model_, *a, **kw).astype(mx.float32)
            labels = mx.stop_gradient(mx.random.categorical(logits, axis=-1, key=key))
            count.append(labels.size)
            return nn.losses.cross_entropy(logits, labels, reduction="mean")

        _, sampled = nn.value_and_grad(model, sampled_loss)(model, *args, **kwargs)
        batch = float(count[-1])
        h = tree_unflatten([(k, batch * mx.square(g.astype(mx.float32))) for k, g in tree_flatten(sampled)])
        return loss, grads, h


def value_and_grad(
    model: nn.Module, loss_fn: Callable, *, compile: bool = False, logits_fn: Callable | None = None
) -> LossAndGrad:
    """Like ``nn.value_and_grad(model, loss_fn)``, keeping ``loss_fn`` for optimizers that need it.

    ``logits_fn(model, *batch)`` (optional) returns the model's logits for the
    batch; Sophia-G's Gauss-Newton-Bartlett estimate (:meth:`LossAndGrad.gnb`) needs it.
    """
    return LossAndGrad(model, loss_fn, compile=compile, logits_fn=logits_fn)
