"""Host-side schedules for the periodic refreshes of the matrix optimizers (eigenbases, inverse roots, projections).

MLX has no lazy conditional: inside a compiled graph a periodic refresh is array logic, the new value computed on
every step and kept with ``mx.where`` on refresh steps. Outside a transform the step counter can be read on the host,
so :class:`HostRefresh` decides there whether this step refreshes and the update only does the expensive work then.

An optimizer using it (``class SOAP(HostRefresh, Optimizer)``) declares its schedule once, for both paths:

* :meth:`HostRefresh.refresh_flags` maps the step to the named flags that gate expensive work (``{"refresh": ...}``),
  written with :func:`every` and the operators ``== > >= & |``, so that the same expression gives Python booleans
  for an ``int`` step and boolean arrays for the float32 step counter of ``hp.step``;
* ``step_scalars`` calls :meth:`HostRefresh.refresh_scalars` (the flags as arrays on ``hp``, the array path);
* the update asks :meth:`HostRefresh.host_flag` (``True`` / ``False`` on the host path, ``None`` for array logic)
  or uses :meth:`HostRefresh.refreshed` (``mx.where(flag, new(), old)``, or only the branch the host picked).

``apply_gradients`` reads the step counter; where that fails (the step is a tracer inside the caller's
``mx.compile`` or another transform) the flags stay unknown and the update is the array logic. The CPU's
auto-fused update (one ``mx.compile``\\ d function, see ``Optimizer._fuses_updates``) keeps one compiled function per
combination of host flags (and one for the array logic), so each trace has only its own branch in it; an optimizer
whose refresh cannot run compiled (it stops an iteration on host-side checks) sets ``fuse_refresh = False`` and its
refresh steps run unfused. Both paths give the same numbers (``tests/test_refresh.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

Step = int | mx.array


def every(step: Step, k: int) -> Any:
    """``step % k == 0``: a Python bool for an ``int`` step, a boolean array for the float32 step counter."""
    if isinstance(step, int):
        return step % k == 0
    return mx.remainder(step, k) == 0


def host_step(opt: Any) -> int | None:
    """The step ``opt`` is about to take (its counter plus one), or ``None`` if the counter cannot be read on the
    host (a tracer inside ``mx.compile`` or another transform)."""
    try:
        return int(opt.state["step"].item()) + 1
    except ValueError:
        return None


class HostRefresh:
    """Mixin (before :class:`mlx_optim.base.Optimizer` in the bases) that runs periodic refreshes only on their steps.

    See the module docstring. Subclasses define :meth:`refresh_flags` and call :meth:`refresh_scalars` from
    ``step_scalars``.
    """

    fuse_refresh = True  # False: refresh steps run the plain (unfused) update
    _host_flags: dict[str, bool] | None = None  # this step's flags while apply_gradients knows them

    def refresh_flags(self, step: Step) -> dict[str, Any]:
        """The named flags of ``step`` (an ``int``, or the float32 step array), each gating some expensive work."""
        raise NotImplementedError

    def refresh_scalars(self, hp: Any) -> None:
        """Put the flags of ``hp.step`` on ``hp`` as boolean arrays (what the array logic selects with)."""
        for name, flag in self.refresh_flags(hp.step).items():
            setattr(hp, name, flag)

    def host_flag(self, name: str) -> bool | None:
        """The flag ``name`` of this step as known on the host, or ``None`` (array logic: select on ``hp.<name>``)."""
        return None if self._host_flags is None else self._host_flags[name]

    def refreshed(self, name: str, new: Callable[[], mx.array], old: mx.array) -> mx.array:
        """``new()`` on the steps where flag ``name`` is set, else ``old``; ``new`` runs only when it may be kept.

        ``new()`` must return ``old``'s dtype and shape (as ``mx.where`` would give without promotion).
        """
        flag = self.host_flag(name)
        if flag is None:
            return mx.where(getattr(self.hp, name), new(), old)
        return new() if flag else old

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        step = host_step(self)
        flags = None if step is None else {k: bool(v) for k, v in self.refresh_flags(step).items()}
        object.__setattr__(self, "_host_flags", flags)
        try:
            return super().apply_gradients(gradients, parameters, loss)
        finally:
            object.__setattr__(self, "_host_flags", None)

    def _fuses_updates(self) -> bool:
        if not self.fuse_refresh and self._host_flags and any(self._host_flags.values()):
            return False
        return super()._fuses_updates()

    def _fused_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        # one compiled function per combination of host flags (None: the array logic); the base traces the one in
        # _fused_fn; _invalidate_trace (an option changed) drops them all
        key = None if self._host_flags is None else tuple(sorted(self._host_flags.items()))
        fns = self.__dict__.setdefault("_refresh_fused_fns", {})
        object.__setattr__(self, "_fused_fn", fns.get(key))
        new = super()._fused_update(gradients, params, loss)
        fns[key] = self.__dict__["_fused_fn"]
        return new

    def _invalidate_trace(self) -> None:
        self.__dict__.pop("_refresh_fused_fns", None)
        super()._invalidate_trace()
