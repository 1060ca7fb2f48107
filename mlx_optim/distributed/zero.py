"""ZeRO stage 1: optimizer state sharded over the ranks by whole leaves, parameters all-gathered."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map_with_path

from mlx_optim.base import GLOBAL_KEY, Optimizer, OptimizerCore
from mlx_optim.distributed.core import (
    Group,
    all_gather_owned,
    balanced_assignment,
    flat_parameters,
    get_group,
    reduce_gradients,
)
from mlx_optim.distributed.data_parallel import _Delegating, apply_inner

__all__ = ["ZeroRedundancyOptimizer", "zero_unsupported_reason"]

_TREE_METHODS = ("prepare", "apply_gradients", "step_with", "update")


def zero_unsupported_reason(optimizer: Any) -> str | None:
    """Why ``optimizer`` cannot have its state sharded by leaves, or ``None`` when it can.

    Sharding by leaves is exact for every optimizer whose update of a leaf reads only that leaf
    (its gradient, parameter and state) and per-step scalars: all element-wise optimizers, and
    also per-leaf norms (LAMB/LARS trust ratios, AdaNorm, Muon's Newton–Schulz, factored
    second moments). It is not for optimizers that

    * reduce over the whole tree in :meth:`~mlx_optim.base.Optimizer.prepare` (global gradient
      norms, D-Adaptation/Prodigy sums, ...), override ``apply_gradients`` / ``update`` /
      ``step_with`` (wrappers, several loss evaluations per step), unless the class declares
      ``zero_compatible = True`` (its cross-leaf sums go through ``self.global_sum``, which the
      sharded wrapper points at ``mx.distributed.all_sum``; see the distributed docs);
    * draw random numbers from one key in leaf order (a ``"key"`` / ``"*_key"`` entry in the
      state, e.g. stochastic rounding of bfloat16 state): each rank would replay the same stream
      on different leaves.

    A class may also set ``zero_compatible = False`` explicitly.
    """
    if isinstance(optimizer, _Delegating):
        return f"{type(optimizer).__name__} is already a distributed wrapper"
    if not isinstance(optimizer, optim.Optimizer):
        return f"{optimizer!r} is not an mlx.optimizers.Optimizer"
    cls = type(optimizer)
    name = cls.__name__
    if isinstance(optimizer, OptimizerCore):  # per-leaf optimizers and wrappers
        flag = getattr(cls, "zero_compatible", None)
        if flag is False:
            return f"{name} declares zero_compatible = False"
        if flag is True:
            return None
        if getattr(cls, "name", "") == "distributedmuon":
            return (
                f"{name} shards its Newton–Schulz work itself: use DataParallel({name}(...)), "
                "or ZeroRedundancyOptimizer(Muon(...))"
            )
        overridden = [m for m in _TREE_METHODS if getattr(cls, m, getattr(Optimizer, m)) is not getattr(Optimizer, m)]
        if overridden:
            return (
                f"{name} overrides {', '.join(overridden)}: its step reduces over the whole parameter tree or "
                "evaluates the loss more than once, which leaf-sharded state cannot reproduce"
            )
        names = [*optimizer.state, *optimizer.state.get(GLOBAL_KEY, {})]
        keys = [k for k in names if k == "key" or k.endswith("_key")]  # e.g. "rounding_key"
        if keys:
            return (
                f"{name} draws random numbers in leaf order from one key ({', '.join(keys)}); "
                "sharded runs would not match unsharded ones"
            )
        return None
    overridden = [m for m in ("apply_gradients", "update") if getattr(cls, m) is not getattr(optim.Optimizer, m)]
    if overridden:
        return f"{name} overrides {', '.join(overridden)}, so its update may not be per-leaf"
    return None


class ZeroRedundancyOptimizer(_Delegating):
    """ZeRO stage 1 over ``mx.distributed``: each rank keeps and updates the state of its share of the leaves.

    **Sharding by whole leaves.** At the first step (or :meth:`init`) the parameter leaves are
    assigned to ranks, largest first to the least-loaded rank (:func:`balanced_assignment`,
    deterministic, so every rank computes the same map). Per step every rank

    1. averages the gradients over the ranks (``mlx.nn.average_gradients``; the loss too) and
       optionally clips the averaged tree by its global norm (``max_grad_norm``);
    2. runs the wrapped optimizer on *its* leaves only: its state exists only for them (state
       memory per rank ≈ 1/world_size of the unsharded state when no single leaf dominates);
    3. all-gathers the updated leaves (one padded ``mx.distributed.all_gather`` per dtype).

    Whole leaves, rather than flattened chunks, keep every per-leaf computation intact, so the
    result of each leaf's update is the unsharded optimizer's, operation for operation; with
    the same averaged gradients it is bit-identical to :class:`DataParallel`. Optimizers whose
    update needs whole-tree reductions are refused with a clear error
    (:func:`zero_unsupported_reason`) unless they route those sums through the ``global_sum`` hook.

    The inner optimizer's state is a flat dict keyed by leaf path (``"layers.0.weight"``); the
    optimizer sees the same leaf paths as without sharding (``decay_filter``, ``muon_filter``,
    ...). Save/resume with :func:`mlx_optim.distributed.save_sharded` / ``load_sharded``.
    Call :meth:`init` before ``mx.compile`` so the state exists when the step is traced.
    """

    def __init__(
        self,
        optimizer: optim.Optimizer,
        group: Group | None = None,
        *,
        max_grad_norm: float | None = None,
    ):
        reason = zero_unsupported_reason(optimizer)
        if reason is not None:
            raise ValueError(
                f"ZeroRedundancyOptimizer: cannot shard this optimizer's state: {reason}. "
                "Use DataParallel (replicated state) instead."
            )
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"ZeroRedundancyOptimizer: max_grad_norm={max_grad_norm!r} must be > 0 or None")
        self.__dict__["inner"] = optimizer
        self.group = get_group(group)
        self.max_grad_norm = max_grad_norm
        self.assignment: dict[str, int] | None = None  # leaf path -> owning rank
        self._signature: list[tuple[str, tuple[int, ...]]] | None = None
        if isinstance(optimizer, Optimizer) and callable(getattr(optimizer, "global_sum", None)):
            optimizer.sum_group = self.group  # the reduction hook: partial sums over owned leaves -> all_sum

    # ------------------------------------------------------------------ the assignment
    def _assign(self, flat: list[tuple[str, mx.array]]) -> None:
        signature = [(path, tuple(x.shape)) for path, x in flat]
        if self._signature is not None:
            if signature != self._signature:
                raise ValueError(
                    "ZeroRedundancyOptimizer: the gradient tree differs from the one the leaves were assigned for "
                    "(the set of trainable parameters must stay fixed)"
                )
            return
        owners = balanced_assignment([x.size for _, x in flat], self.group.size())
        self.assignment = {path: r for (path, _), r in zip(flat, owners)}
        self._signature = signature
        inner = self.inner
        if isinstance(inner, Optimizer) and inner._param_groups and inner._group_check:
            # parameter groups are matched on the whole tree here, once: each rank's inner optimizer then
            # sees only its own leaves, where a group may have none
            inner._assign_groups(dict(flat))
            inner._group_check = False

    @property
    def owned_paths(self) -> list[str]:
        """The leaf paths whose state lives on this rank (after :meth:`init` or the first step)."""
        rank = self.group.rank()
        return [p for p, r in (self.assignment or {}).items() if r == rank]

    def init(self, parameters: Any) -> None:
        """Assign the leaves of ``parameters`` (e.g. ``model.trainable_parameters()``) and create this rank's state."""
        flat = tree_flatten(parameters)
        self._assign(flat)
        owned = set(self.owned_paths)
        self.inner.init({path: p for path, p in flat if path in owned})

    # ------------------------------------------------------------------ the step
    def apply_gradients(self, gradients: Any, parameters: Any, loss: mx.array | None = None) -> Any:
        """Average, update this rank's leaves, all-gather; returns the new parameters (shaped like ``gradients``)."""
        gradients, loss = reduce_gradients(gradients, loss, self.group, self.max_grad_norm)
        return self._apply_averaged(gradients, parameters, loss)

    def _apply_averaged(self, gradients: Any, parameters: Any, loss: mx.array | None) -> Any:
        flat_g = tree_flatten(gradients)
        params = flat_parameters(parameters)
        for path, g in flat_g:
            p = params.get(path)
            if not isinstance(p, mx.array):
                raise ValueError(f"gradient at '{path}' has no matching parameter")
            if p.shape != g.shape:
                raise ValueError(
                    f"gradient at '{path}' has shape {tuple(g.shape)} but the parameter has shape {tuple(p.shape)}"
                )
        self._assign(flat_g)
        rank = self.group.rank()
        owned = [path for path, _ in flat_g if self.assignment[path] == rank]
        grads = dict(flat_g)
        new = apply_inner(self.inner, {p: grads[p] for p in owned}, {p: params[p] for p in owned}, loss)
        like = {path: params[path] for path, _ in flat_g}
        # gather only after everything this rank computed (gradients, state, per-step scalars): any
        # collective inside the update (the global_sum hook) then runs first, in the same order on every rank
        after = [g for _, g in flat_g] + [v for _, v in tree_flatten(self.inner.state) if isinstance(v, mx.array)]
        after += [v for v in vars(getattr(self.inner, "hp", object())).values() if isinstance(v, mx.array)]
        full = all_gather_owned(new, self.assignment, like, self.group, after=after)
        return tree_map_with_path(lambda path, _: full[path], gradients)

    def step_with(self, model: nn.Module, loss_and_grad_fn: Any, *args: Any, **kwargs: Any) -> mx.array:
        """One evaluation of ``loss_and_grad_fn`` on this rank's batch and one sharded update; returns the mean loss."""
        loss, grads = loss_and_grad_fn(model, *args, **kwargs)
        grads, loss = reduce_gradients(grads, loss, self.group, self.max_grad_norm)
        model.update(self._apply_averaged(grads, model, loss))
        return loss
