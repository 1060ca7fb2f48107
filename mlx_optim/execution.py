"""How a per-leaf optimizer's step runs: auto-fused (``mx.compile``d) updates, CPU streams, packing.

:class:`Execution` is a mixin of :class:`mlx_optim.base.Optimizer`. The optimizer decides *what* a step
computes (``_update``: schedules, ``self.hp``, ``prepare``, one ``apply_single`` per leaf); this mixin decides
*how* it runs:

* **fused updates**: on the CPU, ``apply_gradients`` runs ``_update`` as one ``mx.compile``d function
  (:meth:`Execution._fuses_updates`; ``opt.fuse_updates`` forces it on or off). The trace is dropped whenever an
  option changes what the update computes (:meth:`Execution._invalidate_trace`, called by the core's
  ``__setattr__`` and the parameter groups);
* **CPU streams**: :meth:`Execution._run_leaves` hands each leaf to one of several CPU streams
  (:mod:`mlx_optim.streams`; ``opt.update_streams``), with the per-step scalars copied per stream;
* **packing**: with ``opt.packer`` set (:func:`mlx_optim.packed.pack`), the small leaves are created and updated
  as flat buffers by the packer instead of leaf by leaf.

The mixin reads from the class it is mixed into: ``_update``, ``apply_single``, ``compilable``, ``hp``,
``_group_hps``, ``_param_groups``, ``_leaf_call`` and ``_state`` (all defined by :class:`mlx_optim.base.Optimizer`
and :class:`mlx_optim.core.OptimizerCore`).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlx_optim.core import Hyper
from mlx_optim.streams import LeafStreams

__all__ = ["Execution"]


class Execution:
    """Mixin: the execution strategies of a per-leaf optimizer's step (see the module docstring)."""

    fuse_updates: bool | None = None  # None: automatic (see _fuses_updates); True / False: forced

    def _init_execution(self) -> None:
        self.packer = None  # an mlx_optim.packed.Packer: small leaves updated as one flat buffer
        self.update_streams: int | None = None  # CPU streams for the leaf updates (mlx_optim.streams); None: default
        self._streams: LeafStreams | None = None

    # ------------------------------------------------------------------ fused (auto-compiled) updates
    def _fuses_updates(self) -> bool:
        """Whether ``apply_gradients`` runs its update as one ``mx.compile``d function.

        Automatic on the CPU for every optimizer whose update can run inside ``mx.compile`` (``compilable``;
        not L-BFGS): their update keeps no Python-level state that changes between steps, so one trace serves
        every step, and eagerly each leaf's element-wise work becomes a few fused kernels instead of dozens of
        separate passes (``benchmarks/suite.py`` compares both). Not automatic on a GPU (unmeasured there; the
        Metal/CUDA kernels of :mod:`mlx_optim.kernels` already fuse the hot paths). Set
        ``opt.fuse_updates = False`` to run the plain update, or ``True`` to force it."""
        if self.fuse_updates is not None:
            return self.fuse_updates
        from mlx_optim import kernels  # noqa: PLC0415

        on_cpu = mx.default_device() == mx.cpu and kernels.backend() is None
        return on_cpu and self.packer is None and self.compilable

    def _fused_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        """``self._update`` through its ``mx.compile``d trace (traced at the first call, and again after
        :meth:`_invalidate_trace`)."""
        if self.__dict__.get("_fused_fn") is None:

            def body(gradients, params, state, loss):
                outer, self._state = self._state, state
                try:
                    return self._update(gradients, params, loss), self._state
                finally:
                    self._state = outer

            object.__setattr__(self, "_fused_fn", mx.compile(body))
        new_params, new_state = self._fused_fn(gradients, params, self._state, loss)
        self.hp = Hyper()  # the trace's per-step scalars must not escape it
        self._group_hps = []
        self._state.clear()  # in place: a caller's mx.compile(outputs=opt.state) holds this dict
        self._state.update(new_state)
        return new_params

    def _invalidate_trace(self) -> None:
        """Drop the fused update's trace: an option changed what the update computes."""
        self.__dict__.pop("_fused_fn", None)

    # ------------------------------------------------------------------ the per-leaf pass
    def _run_leaves(self, gradients: Any, params: Any) -> Any:
        """``apply_single`` for every leaf: through the packer when packing, else spread over the CPU streams."""
        if self.packer is not None:
            return self.packer.apply(self, gradients, params)
        self._streams = LeafStreams.for_step(self.update_streams)
        try:
            return self._apply_with_paths(gradients, params, self.state, "")
        finally:
            self._streams = None

    def _apply_with_paths(self, g: Any, p: Any, s: Any, path: str) -> Any:
        """``apply_single`` over the tree; ``self._leaf_path`` is the current leaf's path (e.g. ``layers.0.weight``)."""
        if isinstance(g, dict):
            return {k: self._apply_with_paths(g[k], p[k], s[k], f"{path}{k}.") for k in g}
        if isinstance(g, (list, tuple)):
            return type(g)(self._apply_with_paths(a, b, c, f"{path}{i}.") for i, (a, b, c) in enumerate(zip(g, p, s)))
        if self._param_groups:
            return self._leaf_call(path[:-1], p, self._apply_leaf, g, p, s)
        self._leaf_path = path[:-1]
        return self._apply_leaf(g, p, s)

    def _apply_leaf(self, g: mx.array, p: mx.array, s: dict) -> mx.array:
        i = self._streams.pick(g.size) if self._streams is not None else 0
        if i == 0:
            return self.apply_single(g, p, s)
        hp, self.hp = self.hp, self._streams.scalars(i, self.hp)
        try:
            with mx.stream(self._streams.streams[i]):  # independent leaves on several CPU threads (mlx_optim.streams)
                return self.apply_single(g, p, s)
        finally:
            self.hp = hp

    # ------------------------------------------------------------------ packing hooks
    def _packed_paths(self, parameters: Any) -> Any:
        """At ``init``: the leaf paths whose state the packer keeps (they get no per-leaf state)."""
        return self.packer.init(self, parameters) if self.packer is not None else ()

    def _reserved_names(self) -> tuple[str, ...]:
        """Top-level state entries the execution strategy adds (``packed`` when packing)."""
        return ("packed",) if self.packer is not None else ()
