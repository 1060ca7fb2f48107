"""Leaf updates spread over several CPU streams, so that an update uses more than one core.

MLX's CPU backend runs each stream's work on one thread: an optimizer step, a chain of element-wise
kernels per leaf, keeps one core busy however many the machine has. The leaves' updates are
independent, so :class:`mlx_optim.execution.Execution` hands each leaf to one of ``n`` CPU streams
(the default stream and ``n - 1`` more, created once per process), the one with the fewest elements so far.
MLX orders the work across streams by the data each kernel reads, eagerly and under ``mx.compile``, and every leaf
runs the same operations on the same values whichever stream it is on: the results are identical
bit for bit (``tests/test_streams.py``).

Measured with ``benchmarks/step_time.py`` on a 2-core Linux machine: see docs/guides/performance.md
(the performance guide). The default is one stream per available core (at most 8) when the default device is the
CPU, and no extra streams on a GPU (where one stream already fills the device). Override it for the
process with :func:`set_update_streams` or the ``MLX_OPTIM_STREAMS`` environment variable, or for
one optimizer with ``opt.update_streams = n``. Leaves smaller than :data:`MIN_LEAF_SIZE` elements
stay on the default stream (for them the cross-stream hand-off costs more than the work).
"""

from __future__ import annotations

import os
import types
from types import SimpleNamespace
from typing import Any

import mlx.core as mx

__all__ = [
    "MIN_LEAF_SIZE",
    "LeafStreams",
    "default_update_streams",
    "reserve_buffer_cache",
    "set_buffer_cache",
    "set_update_streams",
]

MIN_LEAF_SIZE = 4096
_MAX_AUTO = 8
_setting: int | None = None  # set_update_streams; None = automatic
_extra: list[mx.Stream] = []  # CPU streams created so far (beyond the default one)
_buffer_cache = True  # set_buffer_cache


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def set_update_streams(n: int | None) -> None:
    """Use ``n`` CPU streams for optimizer updates in this process (``None``: automatic, ``1``: off)."""
    global _setting
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"set_update_streams: n={n!r} must be a positive integer or None (automatic)")
    _setting = n


def default_update_streams() -> int:
    """The number of streams an optimizer without its own ``update_streams`` uses now."""
    if _setting is not None:
        return _setting
    env = os.environ.get("MLX_OPTIM_STREAMS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MLX_OPTIM_STREAMS={env!r} must be a positive integer") from None
        if n < 1:
            raise ValueError(f"MLX_OPTIM_STREAMS={env!r} must be a positive integer")
        return n
    if mx.default_device() != mx.cpu:
        return 1
    return max(1, min(_available_cores(), _MAX_AUTO))


def set_buffer_cache(enabled: bool) -> None:
    """Let optimizers raise MLX's buffer-cache limit on the CPU (:func:`reserve_buffer_cache`; default: on)."""
    global _buffer_cache
    _buffer_cache = bool(enabled)


def reserve_buffer_cache(nbytes: int) -> bool:
    """On the CPU, raise MLX's buffer-cache limit to at least ``nbytes`` (never lower it). Returns whether it did.

    Every step writes the new parameters and state to fresh buffers: a fused kernel with several outputs never
    reuses its inputs' memory (MLX donates an input only when nothing else refers to it, and each output of a
    multi-output kernel refers to all inputs). Freed buffers go to MLX's cache, whose limit on the CPU
    backend is 32 MB by default; the rest goes back to ``malloc``, which may return it to the system, and the
    next step then pays a page fault per 4 KB written; in a process whose allocation history made ``malloc`` do
    so, these page faults made up a large part of a compiled AdamW step (``benchmarks/buffer_cache.py``).
    The optimizers call this from ``init`` with twice their parameters' and state's bytes (one step's outputs,
    plus the gradients). Off with :func:`set_buffer_cache` ``(False)`` or ``MLX_OPTIM_BUFFER_CACHE=0``; on a
    GPU MLX's default limit is already the memory limit.
    """
    if not _buffer_cache or os.environ.get("MLX_OPTIM_BUFFER_CACHE", "1") == "0":
        return False
    if mx.default_device() != mx.cpu:
        return False
    previous = mx.set_cache_limit(int(nbytes))
    if previous >= nbytes:
        mx.set_cache_limit(previous)
        return False
    return True


class LeafStreams:
    """One step's assignment of leaves to streams: each leaf to the least-loaded stream."""

    def __init__(self, n: int):
        while len(_extra) < n - 1:
            _extra.append(mx.new_stream(mx.cpu))
        self.streams = [mx.default_stream(mx.cpu), *_extra[: n - 1]]
        self.load = [0] * n
        self._hp: dict[tuple[int, int], Any] = {}

    @classmethod
    def for_step(cls, n: int | None) -> LeafStreams | None:
        """The scheduler for one step, or ``None`` when updates stay on the default stream."""
        n = default_update_streams() if n is None else n
        if n <= 1 or mx.default_device() != mx.cpu:
            return None
        return cls(n)

    def pick(self, size: int) -> int:
        """The index of the stream for a leaf of ``size`` elements (0, the default stream, for small leaves)."""
        if size < MIN_LEAF_SIZE:
            return 0
        i = min(range(len(self.load)), key=self.load.__getitem__)
        self.load[i] += size
        return i

    def scalars(self, i: int, hp: SimpleNamespace) -> Any:
        """``hp`` as seen from stream ``i``: its 0-d arrays copied there once per step (the leaves on that
        stream then wait for one hand-off per scalar instead of one per leaf and scalar); everything
        else, writes included, goes to ``hp`` itself."""
        key = (i, id(hp))  # one namespace per parameter group (mlx_optim.base.Optimizer.set_groups)
        if key not in self._hp:
            self._hp[key] = _OnStream(hp, self.streams[i])
        return self._hp[key]


class _OnStream:
    """A per-step namespace read through a stream-local cache of its scalars (see LeafStreams.scalars)."""

    def __init__(self, base: SimpleNamespace, stream: mx.Stream):
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_stream", stream)
        object.__setattr__(self, "_copies", {})

    def __getattr__(self, name: str) -> Any:
        copies = self._copies
        if name not in copies:
            value = getattr(self._base, name)
            if isinstance(value, mx.array) and value.ndim == 0:
                value = mx.contiguous(value, stream=self._stream)
            elif getattr(value, "__self__", None) is self._base:  # hp.ema(...): read this stream's copies
                value = types.MethodType(value.__func__, self)
            copies[name] = value
        return copies[name]

    def __setattr__(self, name: str, value: Any) -> None:
        self._copies.pop(name, None)
        setattr(self._base, name, value)
