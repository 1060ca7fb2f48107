"""Gradient surgery for several losses: PCGrad and its parallel variant PPCGrad."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Wrapper

__all__ = [
    "PCGrad",
    "PPCGrad",
    "pcgrad_orders",
    "project_conflicting",
    "project_conflicting_parallel",
    "value_and_task_grads",
]

_TINY = 1.1754943508222875e-38  # torch.finfo(torch.float32).tiny


def pcgrad_orders(key: mx.array, num_tasks: int) -> mx.array:
    """The ``(num_tasks, num_tasks)`` task orders of one PCGrad step: row ``i`` is the order in which task
    ``i``'s gradient is projected against the others (the reference's ``random.shuffle`` before each task)."""
    keys = mx.random.split(key, num_tasks)
    return mx.stack([mx.random.permutation(num_tasks, key=keys[i]) for i in range(num_tasks)])


def _merge(pc: mx.array, has: mx.array, reduction: str) -> mx.array:
    """Sum the projected task gradients ``pc`` (T, N); ``mean``: divide where every task has a gradient."""
    merged = mx.sum(pc, axis=0)
    if reduction == "mean":
        shared = mx.all(has, axis=0)
        merged = mx.where(shared, merged / pc.shape[0], merged)
    return merged


def project_conflicting(grads: mx.array, has: mx.array, orders: mx.array, reduction: str = "mean") -> mx.array:
    """pytorch_optimizer's ``PCGrad.project_conflicting`` on stacked flat task gradients ``grads`` (T, N).

    For each task ``i``, in the order ``orders[i]``, over every task ``j`` (itself included):
    :math:`g_i \\leftarrow g_i - \\min(\\langle g_i, g_j\\rangle, 0) / \\max(\\|g_j\\|^2, \\text{tiny})\\, g_j`
    with :math:`g_i` the running (already projected) gradient and :math:`g_j` the original ones.
    """
    num_tasks = grads.shape[0]
    norms = mx.maximum(mx.sum(mx.square(grads), axis=1), _TINY)
    pc = []
    for i in range(num_tasks):
        g_i = grads[i]
        for j in range(num_tasks):
            k = orders[i, j]
            g_j = grads[k]
            coefficient = mx.minimum(mx.sum(g_i * g_j), 0.0) / norms[k]
            g_i = g_i - coefficient * g_j
        pc.append(g_i)
    return _merge(mx.stack(pc), has, reduction)


def project_conflicting_parallel(grads: mx.array, has: mx.array, reduction: str = "mean") -> mx.array:
    r"""PPCGrad's ``project_conflicting``: every task is projected from its *original* gradient,

    :math:`\tilde g_i = g_i - \sum_{j: d_{ij} < 0} d_{ij} / \|g_j\|^2\, g_j`
    (:math:`d_{ij} = \langle g_i, g_j\rangle`),

    which does not depend on the order, so all tasks are done at once (one ``T x T`` Gram matrix)."""
    dots = grads @ grads.T
    norms = mx.maximum(mx.diagonal(dots), _TINY)
    coefficients = mx.where(dots < 0, dots / norms[None, :], 0.0)
    return _merge(grads - coefficients @ grads, has, reduction)


def value_and_task_grads(model: nn.Module, loss_fn: Callable, num_tasks: int | None = None) -> Callable:
    """``fn(model, *args) -> ([loss_1, ...], [grads_1, ...])`` for a ``loss_fn(model, *args)`` returning a
    sequence of task losses (one backward pass per task). ``num_tasks`` saves one trace of ``loss_fn``."""

    def fn(model_: nn.Module, *args: Any, **kwargs: Any) -> tuple[list[mx.array], list[Any]]:
        n = num_tasks if num_tasks is not None else len(loss_fn(model_, *args, **kwargs))
        losses, grads = [], []
        for i in range(n):
            loss, g = nn.value_and_grad(model_, lambda m, *a, i=i, **kw: loss_fn(m, *a, **kw)[i])(
                model_, *args, **kwargs
            )
            losses.append(loss)
            grads.append(g)
        return losses, grads

    return fn


def _is_task_list(gradients: Any, parameters: Any) -> bool:
    return isinstance(gradients, (list, tuple)) and not isinstance(parameters, (list, tuple))


@register
@wrapper_args
class PCGrad(Wrapper):
    r"""PCGrad: a wrapper that merges task gradients after projecting away their conflicts, then steps the optimizer.

    Each task gradient :math:`g_i` (all parameters flattened into one vector) is projected, in a random task
    order, onto the normal plane of every task gradient it conflicts with,

    .. math::
        g_i \leftarrow g_i - \frac{\min(\langle g_i, g_j\rangle, 0)}{\max(\|g_j\|^2, \text{tiny})} g_j,

    and the projected gradients are summed (``reduction="mean"``: divided by the number of tasks where every
    task has a gradient). The merged gradient and the projections are float32.

    Calling forms (all run inside ``mx.compile``; the number of tasks is fixed by the structure of the call):

    * ``opt.update(model, [grads_1, grads_2, ...])`` / ``opt.apply_gradients([grads_1, ...], params)``: a list
      (or tuple) of gradient trees, one per task. A tree may leave out parameters its task does not touch (the
      reference's ``p.grad is None``): those entries are summed instead of averaged, as in the reference.
    * ``opt.step_with(model, [loss_and_grad_1, loss_and_grad_2, ...], *batch)``: one ``(loss, grads)`` function
      per task, each evaluated on the same batch;
    * ``opt.step_with(model, fn, *batch)`` with ``fn(model, *batch) -> ([loss_1, ...], [grads_1, ...])``, e.g.
      :func:`value_and_task_grads` for a ``loss_fn`` returning a list of task losses.

    ``step_with`` returns the task losses stacked into one array (the single loss for one task). A single
    gradient tree (not a list) is one task: the update is then the inner optimizer's.

    Paper: Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, arXiv:2001.06782.

    Reference: ``pytorch_optimizer.PCGrad.pc_backward`` followed by ``step`` (parity-checked). Difference: the
    reference draws each task's order with Python's ``random.shuffle``; here it comes from
    ``mx.random.permutation`` with a key kept in ``state["key"]`` (``seed``), so the step is reproducible,
    compiled and resumable (the parity rows inject the same orders into the reference).

    Args:
        reduction: ``"mean"`` (divide the summed projections by the number of tasks where every task has a
            gradient) or ``"sum"``. Default ``"mean"``.
        seed: Seed of the key that draws the task orders (keyword-only). Default ``0``.
        state_dtype: Accepted for the common signature; the wrapper keeps no per-parameter state
            (keyword-only). Default ``None``.
    """

    name = "pcgrad"
    reference = "pytorch_optimizer.PCGrad"

    def __init__(
        self,
        optimizer: Any,
        reduction: str = "mean",
        *,
        seed: int = 0,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self._choice("reduction", reduction, ("mean", "sum"))
        self.reduction = reduction
        self._setup_key(seed)

    def _setup_key(self, seed: int) -> None:
        self._state["key"] = mx.random.key(seed)

    def step_scalars(self, hp) -> None:
        self._state["key"], hp.key = mx.random.split(self._state["key"])

    def project(self, grads: mx.array, has: mx.array) -> mx.array:
        return project_conflicting(grads, has, pcgrad_orders(self.hp.key, grads.shape[0]), self.reduction)

    # ------------------------------------------------------------------ calling forms
    def step_with(self, model: nn.Module, loss_and_grad_fn: Any, *args: Any, **kwargs: Any) -> mx.array:
        if isinstance(loss_and_grad_fn, (list, tuple)):
            pairs = [fn(model, *args, **kwargs) for fn in loss_and_grad_fn]
            losses, grads = [p[0] for p in pairs], [p[1] for p in pairs]
        else:
            losses, grads = loss_and_grad_fn(model, *args, **kwargs)
            if not isinstance(losses, (list, tuple)):
                self.update(model, grads, loss=losses)
                return losses
        if len(losses) != len(grads):
            raise ValueError(f"{type(self).__name__}: got {len(losses)} losses but {len(grads)} gradient trees")
        stacked = mx.stack([mx.array(v).reshape(()) for v in losses])
        total = mx.mean(stacked) if self.reduction == "mean" else mx.sum(stacked)
        self.update(model, list(grads), loss=total)
        return stacked

    def apply_gradients(self, gradients: Any, parameters: Any, loss: mx.array | None = None) -> Any:
        tasks = list(gradients) if _is_task_list(gradients, parameters) else [gradients]
        if not tasks:
            raise ValueError(f"{type(self).__name__}: no task gradients")
        flat = [dict(tree_flatten(t)) for t in tasks]
        paths = list(dict.fromkeys(k for f in flat for k in f))
        first = {k: next(f[k] for f in flat if k in f) for k in paths}
        structure = tree_unflatten([(k, first[k]) for k in paths])
        params = self._begin(structure, parameters, loss)
        pflat = dict(tree_flatten(params))
        for i, f in enumerate(flat):
            for k, g in f.items():
                if g.shape != pflat[k].shape:
                    raise ValueError(
                        f"{type(self).__name__}: task {i} gradient at '{k}' has shape {tuple(g.shape)} "
                        f"but the parameter has shape {tuple(pflat[k].shape)}"
                    )
        if len(tasks) == 1:
            return self.inner_apply(structure, params, loss)

        def row(f: dict) -> tuple[mx.array, mx.array]:
            g = [f[k].astype(mx.float32).reshape(-1) if k in f else mx.zeros(first[k].size) for k in paths]
            h = [mx.full(first[k].size, k in f, mx.bool_) for k in paths]
            return mx.concatenate(g), mx.concatenate(h)

        rows = [row(f) for f in flat]
        merged = self.project(mx.stack([g for g, _ in rows]), mx.stack([h for _, h in rows]))
        out, start = [], 0
        for k in paths:
            n = first[k].size
            out.append((k, merged[start : start + n].reshape(first[k].shape).astype(first[k].dtype)))
            start += n
        return self.inner_apply(tree_unflatten(out), params, loss)


@register
@wrapper_args
class PPCGrad(PCGrad):
    r"""PPCGrad: parallel PCGrad, every task gradient projected from its original value, independent of the order.

    .. math::
        \tilde g_i = g_i - \sum_{j:\ \langle g_i, g_j\rangle < 0} \frac{\langle g_i, g_j\rangle}{\|g_j\|^2} g_j,

    then merged as in :class:`PCGrad` (``reduction`` ``"mean"`` / ``"sum"``). With the dot products taken
    against each task's unprojected gradient the result does not depend on the task order, so all tasks are
    projected at once with the ``T x T`` Gram matrix and no random key is needed. Same calling forms as
    :class:`PCGrad`.

    Paper: none of its own; a variant of PCGrad (Yu et al., NeurIPS 2020, arXiv:2001.06782).

    Reference: a torch transcription of ``PPCGrad.project_conflicting`` from its source document (see
    ``docs/provenance.md``; parity-checked). Difference: that code's
    ``pc_backward(tape, losses, variables)`` returns the merged gradient instead of stepping an optimizer.

    Args:
        reduction: ``"mean"`` (divide the summed projections by the number of tasks where every task has a
            gradient) or ``"sum"``. Default ``"mean"``.
        state_dtype: Accepted for the common signature; the wrapper keeps no per-parameter state
            (keyword-only). Default ``None``.
    """

    name = "ppcgrad"
    reference = "PPCGrad.project_conflicting (torch transcription)"

    def __init__(
        self,
        optimizer: Any,
        reduction: str = "mean",
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            optimizer,
            reduction,
            learning_rate=learning_rate,
            optimizer_kwargs=optimizer_kwargs,
            state_dtype=state_dtype,
        )

    def _setup_key(self, seed: int) -> None:
        pass

    def step_scalars(self, hp) -> None:
        pass

    def project(self, grads: mx.array, has: mx.array) -> mx.array:
        return project_conflicting_parallel(grads, has, self.reduction)
