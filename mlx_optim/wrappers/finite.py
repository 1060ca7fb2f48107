"""ApplyIfFinite (optax's ``apply_if_finite``): skip the steps whose gradients hold a NaN or an infinity."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from mlx_optim import functional as F
from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Phased, Wrapper, _assign, select_tree

__all__ = ["ApplyIfFinite", "all_finite"]

_INT32_MAX = 2**31 - 1


def all_finite(tree: Any) -> mx.array:
    """A boolean 0-d array: every element of every array leaf of ``tree`` is finite (no NaN, no +-inf).

    Computed as ``sum(x * 0) == 0`` per leaf (``inf * 0`` is NaN and a NaN propagates through the sum; a
    finite ``x * 0`` is exactly 0, so no overflow can occur), with :func:`mlx_optim.functional.sum_all`, which is
    cheaper on the CPU backend than ``mx.all(mx.isfinite(x))``.
    """
    out = mx.array(True)
    for _, x in tree_flatten(tree):
        if isinstance(x, mx.array):
            out = out & (F.sum_all(x * 0) == 0)
    return out


def _safe_increment(count: mx.array) -> mx.array:
    """``count + 1``, staying at the int32 maximum instead of wrapping (optax's ``numerics.safe_increment``)."""
    return mx.where(count < _INT32_MAX, count + 1, count)


def _drives_its_own_gradients(opt: Any) -> str | None:
    """Why ``opt`` cannot be guarded through ``apply_gradients`` (it computes its gradients in ``step_with``)."""
    if isinstance(opt, Phased) and not opt.transparent:
        return f"{type(opt).__name__} evaluates the gradient several times per step (build it with transparent=True)"
    if hasattr(opt, "estimate"):
        return f"{type(opt).__name__} takes its curvature estimate inside step_with"
    if not getattr(opt, "compilable", True):
        return f"{type(opt).__name__} runs its own line search inside step_with"
    inner = getattr(opt, "inner", None)
    return None if inner is None else _drives_its_own_gradients(inner)


@register
@wrapper_args
class ApplyIfFinite(Wrapper):
    r"""ApplyIfFinite: a wrapper under which a step whose gradients are not all finite changes nothing.

    One NaN or infinity in one gradient leaf would otherwise make every parameter NaN within a step or two. Each
    step checks every gradient leaf:

    .. math::
        f_t = \bigwedge_{\text{leaves}} \operatorname{all}(\operatorname{isfinite}(g)),\quad
        c_t = \begin{cases} 0 & f_t \\ c_{t-1} + 1 & \text{otherwise}\end{cases},\quad
        \text{apply}_t = f_t \lor c_t > \text{max\_consecutive\_errors}

    When ``apply`` is false the parameters and the inner optimizer's whole state (moments, its step counter,
    schedules, random keys) are left exactly as they were; when true the inner optimizer steps as usual. So after
    ``max_consecutive_errors`` skipped steps in a row the next non-finite step is applied (the model becomes
    non-finite: the guard gives up, as optax does), and so is every further non-finite step until a finite one
    resets the count. The state keeps optax's counters, all ``mx.array``: ``notfinite_count`` (consecutive
    non-finite steps, int32), ``total_notfinite`` (all of them, never reset, int32; both saturate at the int32
    maximum like optax's ``safe_increment``) and ``last_finite`` (bool: whether the last step's gradients were
    finite). The wrapper's own ``step`` counts every call, skipped ones included; the inner optimizer's counts
    the applied updates. ``max_consecutive_errors=0`` applies every step (counting only).

    The decision is ``mx.where`` on arrays (the parameters and each inner state array are selected between the
    updated and the previous value), so it works inside ``mx.compile(step, inputs=state, outputs=state)``. The cost:
    the inner update is always computed, and the selections split an element-wise update's one fused kernel per leaf
    into several (AdamW: 9 operations per leaf instead of 1, :func:`mlx_optim.fusion.ops_per_leaf`), so a guarded
    step is noticeably slower than a bare one. Only the gradients are checked, as in optax (not the loss given to
    loss-driven optimizers). Optimizers that compute their own gradients inside ``step_with`` (a non-transparent
    SAM, AdaHessian / Sophia with their curvature estimates, L-BFGS) cannot be wrapped: a transparent SAM
    (``transparent=True``) can.

    Paper: none; this is optax's ``apply_if_finite`` transformation.

    Reference: ``optax.apply_if_finite`` (``inner``, ``max_consecutive_errors``), transcribed around the same torch
    optimizer, with NaN / inf written into the gradients (parity-checked); the forcing after
    ``max_consecutive_errors`` is tested against a NumPy transcription of optax's code with optax's SGD and Adam.
    Difference: optax has no default for ``max_consecutive_errors``; 5 here, so that the wrapper can be named
    alone, e.g. ``applyiffinite:adamw`` on the command line.

    Args:
        optimizer: The inner optimizer (optax's ``inner``): an instance, a class or a registered name (then built
            with ``optimizer_kwargs`` and ``learning_rate``). Required.
        max_consecutive_errors: How many non-finite steps in a row are skipped before one is applied anyway (an
            integer >= 0). Default ``5``.
        state_dtype: Accepted for the common signature; the wrapper's own state is three scalars (keyword-only).
            Default ``None``.
    """

    name = "applyiffinite"
    reference = "optax.apply_if_finite (transcribed around the torch optimizers)"

    def __init__(
        self,
        optimizer: Any,
        max_consecutive_errors: int = 5,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        m = max_consecutive_errors
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ValueError(f"ApplyIfFinite: max_consecutive_errors={m!r} must be an integer >= 0")
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        why = _drives_its_own_gradients(self.inner)
        if why is not None:
            raise ValueError(f"ApplyIfFinite cannot guard {type(self.inner).__name__}: {why}")
        self.max_consecutive_errors = m
        self._state["notfinite_count"] = mx.array(0, mx.int32)
        self._state["last_finite"] = mx.array(True)
        self._state["total_notfinite"] = mx.array(0, mx.int32)

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        state = self._state
        finite = all_finite(gradients)
        count = mx.where(finite, mx.array(0, mx.int32), _safe_increment(state["notfinite_count"]))
        apply = finite | (count > self.max_consecutive_errors)
        before = [(k, v) for k, v in tree_flatten(self.inner.state) if isinstance(v, mx.array)]
        new_params = self.inner_apply(gradients, params, loss)
        after = dict(tree_flatten(self.inner.state))
        kept = []
        for k, old in before:
            new = after.get(k)
            if isinstance(new, mx.array):
                kept.append((k, mx.where(apply, new, old if old.dtype == new.dtype else old.astype(new.dtype))))
        _assign(self.inner.state, kept)
        state["notfinite_count"] = count
        state["last_finite"] = finite
        state["total_notfinite"] = mx.where(finite, state["total_notfinite"], _safe_increment(state["total_notfinite"]))
        return select_tree(apply, new_params, params)
