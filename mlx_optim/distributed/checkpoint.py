"""Per-rank optimizer checkpoints (safetensors), resumable with the same or a different number of ranks.

Layout: one file per rank, ``<directory>/optimizer.rank-<rank>-of-<world>.safetensors`` (5-digit,
0-based ranks), holding the flattened state this rank keeps (``tree_flatten`` keys, e.g.
``layers.0.weight.exp_avg``, ``step``) and metadata (format, optimizer class, rank, world size,
step). Model parameters are identical on every rank and are not part of it: save them once
(e.g. ``model.save_weights`` on rank 0).

* Same world size: each rank reads only its own file (no shared filesystem needed), and the
  run continues on the identical trajectory.
* Different world size: leaf-sharded state is re-sharded. Every rank reads *all* the old
  files, takes the entries of the leaves it now owns and the replicated scalars, and checks
  that nothing is missing. Files that are not readable on a rank raise a ``ValueError`` naming
  them (copy every shard to every host or use a shared filesystem, or resume with the old
  world size). State written by :class:`DataParallel`, :class:`ZeroRedundancyOptimizer`,
  ``DistributedMuon`` or a plain optimizer uses the same keys, so any of them can resume
  from any other (with ``strict=False`` when the optimizer class differs, e.g. Muon ↔ DistributedMuon).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mlx_optim.base import GLOBAL_KEY
from mlx_optim.distributed.core import Group, barrier
from mlx_optim.distributed.data_parallel import _Delegating

__all__ = ["save_sharded", "load_sharded", "shard_filename"]

FORMAT = "mlx_optim.distributed/1"
_PATTERN = re.compile(r"^optimizer\.rank-(\d+)-of-(\d+)\.safetensors$")


def shard_filename(rank: int, world_size: int) -> str:
    """The file name of ``rank``'s shard in a checkpoint written by ``world_size`` ranks."""
    return f"optimizer.rank-{rank:05d}-of-{world_size:05d}.safetensors"


def _group_of(opt: Any, group: Group | None) -> tuple[Group | None, int, int]:
    g = group if group is not None else opt.__dict__.get("group")
    if isinstance(g, mx.distributed.Group):
        return g, g.rank(), g.size()
    return None, 0, 1


def _optimizer_name(opt: Any) -> str:
    return type(opt.inner if isinstance(opt, _Delegating) else opt).__name__


def _entries(tree: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(key, container, index)`` of every array in ``tree``; keys as in ``tree_flatten``."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        raise ValueError(f"optimizer state at '{prefix[:-1]}' is a {type(tree).__name__}; expected dicts and lists")
    out = []
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, mx.array):
            out.append((key, tree, k))
        elif isinstance(v, (dict, list)):
            out.extend(_entries(v, f"{key}."))
    return out


def _legacy_key(key: str) -> str | None:
    """The key of ``key`` in a state saved before ``"_global"`` held the tunables and global arrays."""
    parts = key.split(".")
    if GLOBAL_KEY not in parts:
        return None
    parts.remove(GLOBAL_KEY)
    return ".".join(parts)


def _shards(directory: Path) -> dict[int, dict[int, Path]]:
    """``{world_size: {rank: path}}`` of the shard files in ``directory``."""
    found: dict[int, dict[int, Path]] = {}
    if directory.is_dir():
        for f in directory.iterdir():
            m = _PATTERN.match(f.name)
            if m:
                found.setdefault(int(m.group(2)), {})[int(m.group(1))] = f
    return found


def save_sharded(opt: Any, directory: str | Path, group: Group | None = None) -> Path:
    """Write this rank's optimizer state to ``directory`` and wait for every rank; returns the file written.

    ``opt`` is a :class:`DataParallel`, a :class:`ZeroRedundancyOptimizer`, a ``DistributedMuon`` or
    any optimizer (then ``group`` gives the rank; one rank by default). Every rank must call it.
    A directory holding shards of a different world size is refused (use one directory per checkpoint).
    """
    g, rank, world = _group_of(opt, group)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    other = sorted(w for w in _shards(directory) if w != world)
    if other:
        raise ValueError(
            f"save_sharded: {directory} already holds shards written by {other} ranks; "
            "use a separate directory for each checkpoint"
        )
    state = opt.state
    arrays = {key: container[index] for key, container, index in _entries(state)}
    mx.eval(arrays)
    step = state.get("step")
    metadata = {
        "format": FORMAT,
        "optimizer": _optimizer_name(opt),
        "wrapper": type(opt).__name__,
        "rank": str(rank),
        "world_size": str(world),
        "step": str(int(step.item())) if isinstance(step, mx.array) else "",
    }
    path = directory / shard_filename(rank, world)
    mx.save_safetensors(str(path), arrays, metadata=metadata)
    if g is not None:
        barrier(g)
    return path


def load_sharded(
    opt: Any,
    directory: str | Path,
    parameters: Any,
    group: Group | None = None,
    *,
    strict: bool = True,
) -> None:
    """Restore the state :func:`save_sharded` wrote, for this rank of this world size.

    ``parameters`` are the (trainable) parameters being optimized, or the model: the state is
    created for them (``opt.init``), then every entry is filled from the checkpoint, checking
    shapes and dtypes. With the world size of the checkpoint only this rank's file is read; with
    another one all files are read and re-sharded. ``strict`` also refuses a different optimizer
    class and, with the same world size, entries this rank would not use.
    """
    g, rank, world = _group_of(opt, group)
    directory = Path(directory)
    shards = _shards(directory)
    if not shards:
        raise FileNotFoundError(f"load_sharded: no optimizer shards (optimizer.rank-*-of-*.safetensors) in {directory}")
    if len(shards) > 1:
        raise ValueError(f"load_sharded: {directory} mixes shards of world sizes {sorted(shards)}")
    ((old_world, files),) = shards.items()
    need = [rank] if old_world == world else list(range(old_world))
    missing = [shard_filename(r, old_world) for r in need if r not in files]
    if missing:
        if old_world == world:
            why = f"rank {rank} needs its own shard"
        else:
            why = (
                f"the checkpoint was written by {old_world} ranks and this run has {world}: re-sharding reads every "
                f"shard, so all {old_world} files must be readable on every rank (copy them to each host or use a "
                f"shared filesystem), or resume with {old_world} ranks"
            )
        raise ValueError(f"load_sharded: {why}; missing in {directory}: {', '.join(missing)}")

    values: dict[str, mx.array] = {}
    steps = set()
    for r in need:
        arrays, meta = mx.load(str(files[r]), return_metadata=True)
        if meta.get("format") != FORMAT:
            raise ValueError(f"load_sharded: {files[r]} is not an mlx_optim.distributed checkpoint")
        if strict and meta.get("optimizer") != _optimizer_name(opt):
            raise ValueError(
                f"load_sharded: {files[r]} holds {meta.get('optimizer')} state but the optimizer is "
                f"{_optimizer_name(opt)} (pass strict=False to load matching entries anyway)"
            )
        steps.add(meta.get("step"))
        values.update(arrays)
    if len(steps) > 1:
        raise ValueError(f"load_sharded: the shards in {directory} were saved at different steps {sorted(steps)}")

    if isinstance(parameters, nn.Module):
        parameters = parameters.trainable_parameters()
    opt.init(parameters)
    entries = _entries(opt.state)
    for key, _, _ in entries:  # a checkpoint written before "_global": its tunables and global arrays one level up
        old = _legacy_key(key)
        if key not in values and old in values:
            values[key] = values.pop(old)
    # parameter groups defined since the checkpoint was written keep their constructor values
    entries = [e for e in entries if e[0] in values or f"{GLOBAL_KEY}.groups." not in e[0]]
    absent = [key for key, _, _ in entries if key not in values]
    if absent:
        shown = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
        raise ValueError(f"load_sharded: the checkpoint in {directory} has no state for {shown}")
    for key, container, index in entries:
        value, fresh = values[key], container[index]
        if value.shape != fresh.shape or value.dtype != fresh.dtype:
            raise ValueError(
                f"load_sharded: state '{key}' is {value.dtype}{tuple(value.shape)} in the checkpoint but "
                f"{fresh.dtype}{tuple(fresh.shape)} here"
            )
        container[index] = value
    if strict and old_world == world:
        extra = sorted(set(values) - {key for key, _, _ in entries})
        if extra:
            raise ValueError(
                f"load_sharded: the checkpoint has state this optimizer does not use: {', '.join(extra[:5])}"
            )
    mx.eval(opt.state)
    if g is not None:
        barrier(g)
