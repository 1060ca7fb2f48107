"""Communication helpers on top of ``mx.distributed`` (no communication layer of our own).

Everything here is a thin composition of ``mx.distributed.all_sum`` / ``all_gather`` and
``mlx.nn.average_gradients``, so it runs on whatever backend ``mx.distributed.init()`` picked
(ring over TCP/Thunderbolt, MPI, NCCL on CUDA, JACCL) and inside ``mx.compile``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.optimizers import clip_grad_norm
from mlx.utils import tree_flatten, tree_map_with_path

__all__ = [
    "get_group",
    "balanced_assignment",
    "all_gather_owned",
    "broadcast_parameters",
    "average_gradients",
    "average_loss",
    "reduce_gradients",
    "all_reduce",
    "barrier",
]

Group = mx.distributed.Group


def get_group(group: Group | None = None) -> Group:
    """``group`` itself, or the global group (``mx.distributed.init()``; a singleton group when not launched)."""
    return group if group is not None else mx.distributed.init()


def average_gradients(gradients: Any, group: Group | None = None, all_reduce_size: int = 32 * 1024**2) -> Any:
    """The mean of ``gradients`` over the ranks (identity on one rank); see :func:`reduce_gradients`."""
    return reduce_gradients(gradients, None, get_group(group), all_reduce_size=all_reduce_size)[0]


def average_loss(loss: mx.array | None, group: Group) -> mx.array | None:
    """The mean of a scalar ``loss`` over the ranks (the global-batch loss when every rank has an equal share)."""
    if loss is None or group.size() == 1:
        return loss
    return mx.distributed.all_sum(loss, group=group) / group.size()


def all_reduce(
    arrays: Sequence[mx.array], group: Group, *, mean: bool = True, all_reduce_size: int = 32 * 1024**2
) -> list[mx.array]:
    """``all_sum(x) / world_size`` (``mean``) or ``all_sum(x)`` for each array, with few collectives.

    Like ``mlx.nn.average_gradients``: the arrays are concatenated into flat buffers of about
    ``all_reduce_size`` bytes and each buffer is summed with one ``mx.distributed.all_sum``; unlike
    it, arrays of different dtypes (bf16 weights, fp32 norms, the fp32 loss) are grouped per dtype
    instead of falling back to one collective per array. Values are those of
    ``all_sum(x) / world_size`` element by element. All results depend on all the collectives
    (one ``mx.depends``), so every rank runs them in the same order whatever it computes next.
    """
    world = group.size()
    if world == 1 or not arrays:
        return list(arrays)
    out: list[mx.array | None] = [None] * len(arrays)
    for dtype in sorted({a.dtype for a in arrays}, key=str):
        chunk: list[int] = []
        nbytes = 0
        members = [i for i, a in enumerate(arrays) if a.dtype == dtype]
        for n, i in enumerate(members):
            chunk.append(i)
            nbytes += arrays[i].nbytes
            if nbytes >= all_reduce_size or n == len(members) - 1:
                flat = (
                    mx.concatenate([arrays[j].reshape(-1) for j in chunk]) if len(chunk) > 1 else arrays[i].reshape(-1)
                )
                total = mx.distributed.all_sum(flat, group=group)
                total = total / world if mean else total
                offset = 0
                for j in chunk:
                    out[j] = total[offset : offset + arrays[j].size].reshape(arrays[j].shape)
                    offset += arrays[j].size
                chunk, nbytes = [], 0
    return mx.depends(out, out)


def reduce_gradients(
    gradients: Any,
    loss: mx.array | None,
    group: Group,
    max_grad_norm: float | None = None,
    all_reduce_size: int = 32 * 1024**2,
) -> tuple[Any, mx.array | None]:
    """Average ``gradients`` and ``loss`` over the ranks (:func:`all_reduce`), then clip by the global norm.

    One ``all_sum`` per dtype (and per ``all_reduce_size`` bytes) carries the gradients and the loss.
    After the average every rank holds the whole averaged gradient tree, so the global norm for
    ``max_grad_norm`` (``mlx.optimizers.clip_grad_norm``) needs no further communication and is
    identical on every rank.
    """
    if group.size() > 1:
        flat = tree_flatten(gradients)
        arrays = [g for _, g in flat] + ([loss] if loss is not None else [])
        averaged = all_reduce(arrays, group, all_reduce_size=all_reduce_size)
        by_path = {k: a for (k, _), a in zip(flat, averaged)}
        gradients = tree_map_with_path(lambda path, _: by_path[path], gradients)
        loss = averaged[-1] if loss is not None else None
    if max_grad_norm is not None:
        gradients, _ = clip_grad_norm(gradients, max_grad_norm)
    return gradients, loss


def barrier(group: Group) -> None:
    """Block until every rank got here (an evaluated ``all_sum`` of a scalar)."""
    if group.size() > 1:
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))


def broadcast_parameters(model: nn.Module, group: Group | None = None, root: int = 0) -> None:
    """Give every rank ``root``'s parameters, in place (``all_sum`` of ``root``'s values and zeros: exact).

    Data-parallel training needs identical parameters everywhere; call this once after building
    the model (or seed every rank's initialisation identically).
    """
    group = get_group(group)
    if group.size() == 1:
        return
    mine = group.rank() == root
    params = model.parameters()
    flat = tree_flatten(params)
    summed = all_reduce([p if mine else mx.zeros_like(p) for _, p in flat], group, mean=False)
    by_path = {k: v for (k, _), v in zip(flat, summed)}
    model.update(tree_map_with_path(lambda path, _: by_path[path], params))
    mx.eval(model.parameters())


def balanced_assignment(sizes: Sequence[int], world_size: int) -> list[int]:
    """Assign items (leaves) of the given sizes to ranks, largest first to the least-loaded rank.

    Deterministic (ties go to the lower index / lower rank), so every rank computes the same
    assignment from the same tree. Returns the owning rank of each item, in the input order.
    """
    owners = [0] * len(sizes)
    load = [0] * world_size
    for i in sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        owners[i] = r
        load[r] += int(sizes[i])
    return owners


def all_gather_owned(
    local: dict[str, mx.array],
    owners: dict[str, int],
    like: dict[str, mx.array],
    group: Group,
    after: Sequence[mx.array] = (),
) -> dict[str, mx.array]:
    """Every rank's owned arrays, on every rank.

    ``owners`` maps each path to the rank that computed it (same dict, same order on every rank);
    ``local`` holds this rank's arrays (its owned paths); ``like`` gives every path's shape and
    dtype. Per dtype, each rank concatenates its arrays into one flat buffer, padded to the
    longest rank's buffer, and one ``mx.distributed.all_gather`` exchanges them; the values are
    copied, never rounded. Returns ``{path: array}`` for all of ``owners``.

    The gathers run after every array of ``after`` (pass the step's gradients and updated state,
    so any collective inside the update comes first on every rank) and after one another, so
    all ranks issue the collectives in the same order whatever they computed locally.
    """
    world, rank = group.size(), group.rank()
    if world == 1:
        return {path: local[path] for path in owners}
    out = {path: local[path] for path, r in owners.items() if r == rank}
    dtypes = sorted({like[path].dtype for path in owners}, key=str)
    for dtype in dtypes:
        per_rank = [[p for p, r in owners.items() if r == k and like[p].dtype == dtype] for k in range(world)]
        lengths = [sum(like[p].size for p in paths) for paths in per_rank]
        n = max(lengths)
        if n == 0:
            continue
        parts = [local[p].astype(dtype).reshape(-1) for p in per_rank[rank]]
        if lengths[rank] < n:
            parts.append(mx.zeros((n - lengths[rank],), dtype=dtype))
        buffer = mx.concatenate(parts) if len(parts) > 1 else parts[0]
        if after:
            buffer = mx.depends(buffer, list(after))
        gathered = mx.distributed.all_gather(buffer, group=group).reshape(world, n)
        after = [gathered]
        for k in range(world):
            if k == rank:
                continue
            offset = 0
            for p in per_rank[k]:
                size = like[p].size
                out[p] = gathered[k, offset : offset + size].reshape(like[p].shape)
                offset += size
    return {path: out[path] for path in owners}


def flat_parameters(parameters: Any) -> dict[str, mx.array]:
    """``{path: array}`` of a parameter tree (or ``nn.Module``), paths as in ``tree_flatten``."""
    return dict(tree_flatten(parameters))
