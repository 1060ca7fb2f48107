"""Base classes for optimizers that wrap an optimizer, and for multi-evaluation (SAM-style) steps.

State layout
------------
A :class:`Wrapper` owns one inner optimizer (any ``mlx_optim`` optimizer, any
``mlx.optimizers.Optimizer``, or a name / class built with ``optimizer_kwargs``)
and keeps everything in its own ``state`` dict, so that one
``mx.compile(step, inputs=[model.state, opt.state], outputs=[...])`` captures
the wrapper and the inner optimizer together and one ``tree_flatten(opt.state)``
saves both::

    opt.state == {
        "step": ...,            # the wrapper's (outer) step counter
        "_global": {...},       # the wrapper's own hyperparameters (alpha, rho, ...), float32 arrays, and
                                # (multi-phase wrappers only) "calls": update calls made (transparent mode)
        "inner": inner.state,   # the very same dict object the inner optimizer uses
        "slots": {...},         # per-parameter wrapper state (slow weights, old weights, ...), shaped like the params
    }

The ``state`` setter routes a loaded ``["inner"]`` subtree back to the inner
optimizer, so ``opt.state = tree_unflatten(...)`` resumes exactly (a state saved with the wrapper's
tunables at the top level, before ``"_global"``, is converted). Parameter groups belong to the inner
optimizer (``Lookahead(AdamW(..., groups=[...]))``); the wrapper's own operations see every parameter.
``learning_rate`` reads and writes the inner optimizer's (mlx-lm reports
``optimizer.learning_rate.item()``).

Multi-phase steps
-----------------
SAM-like methods need several gradient evaluations per step. A
:class:`Phased` optimizer describes one step as ``num_phases`` functions
``phase(i, grads, params, slots)``: phase ``i`` receives the gradient evaluated
at the parameters phase ``i - 1`` returned. Two calling forms run the same
functions:

* ``loss = opt.step_with(model, loss_and_grad_fn, *batch)`` evaluates the
  gradient ``num_phases`` times on the same batch (the package's
  re-evaluation convention) and returns the loss of the first evaluation;
* with ``transparent=True`` every ordinary ``update(model, grads)`` call runs
  one phase, chosen by ``calls % num_phases`` with ``mx.where`` (optax's
  ``contrib/_sam.py`` "transparent mode"), so the optimizer runs inside
  mlx-lm's compiled one-update-per-step trainer. To stay free of Python
  branching on arrays, every call computes all phases and keeps the selected
  one (parameters and the whole state tree, the inner optimizer's included);
  the extra work is optimizer arithmetic only, never a model evaluation.
  Consecutive calls should see the same batch for the result to equal
  ``step_with``; with a new batch per call the perturbation comes from one
  batch and the descent gradient from the next, as in optax.

BatchNorm: ``step_with`` freezes ``nn.BatchNorm`` running statistics during the
re-evaluations (:func:`disable_running_stats`), as pytorch_optimizer recommends
(and WSAM/GSAM do inside their ``step``); in transparent mode the optimizer
never sees the model, so do it yourself if it matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from mlx_optim import quantized
from mlx_optim.core import OptimizerCore, _match, check_range
from mlx_optim.registry import load_optimizer

__all__ = [
    "Wrapper",
    "Phased",
    "build_inner",
    "disable_running_stats",
    "enable_running_stats",
    "select_tree",
]


# ---------------------------------------------------------------------------- pure helpers
def select_tree(cond: mx.array, a: Any, b: Any) -> Any:
    """``mx.where(cond, a, b)`` leaf by leaf over two trees of the same structure."""
    return tree_map(lambda x, y: mx.where(cond, x, y), a, b)


def _set_path(tree: Any, path: str, value: mx.array) -> None:
    keys = path.split(".")
    node = tree
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _assign(tree: Any, flat: list[tuple[str, mx.array]]) -> None:
    """Write the ``(path, array)`` pairs of ``tree_flatten`` back into ``tree`` in place."""
    for path, value in flat:
        _set_path(tree, path, value)


def _init_slots(params: Any, slots: Any, init_single: Callable) -> Any:
    """Create the missing per-parameter slot dicts (like ``mlx.optimizers.Optimizer.init``)."""
    if isinstance(params, dict):
        slots = {} if not isinstance(slots, dict) else slots
        for k, v in params.items():
            slots[k] = _init_slots(v, slots.get(k), init_single)
        return slots
    if isinstance(params, (list, tuple)):
        slots = list(slots) if isinstance(slots, (list, tuple)) else []
        slots.extend({} for _ in range(len(params) - len(slots)))
        return [_init_slots(p, s, init_single) for p, s in zip(params, slots)]
    slots = slots if isinstance(slots, dict) else {}
    if not slots:
        init_single(params, slots)
    return slots


def build_inner(owner: str, optimizer: Any, learning_rate: Any, optimizer_kwargs: dict | None) -> optim.Optimizer:
    """The inner optimizer from an instance, a class or a registered name (plus ``optimizer_kwargs``)."""
    if learning_rate is not None and not callable(learning_rate):
        check_range(owner, "learning_rate", learning_rate, 0.0)
    if isinstance(optimizer, optim.Optimizer):
        if optimizer_kwargs:
            raise ValueError(f"{owner}: optimizer_kwargs are only used when the optimizer is given by name or class")
        if learning_rate is not None:
            optimizer.learning_rate = learning_rate
        return optimizer
    if isinstance(optimizer, str):
        cls = load_optimizer(optimizer)
    elif isinstance(optimizer, type) and issubclass(optimizer, optim.Optimizer):
        cls = optimizer
    else:
        raise ValueError(f"{owner}: optimizer={optimizer!r} must be an optimizer, an optimizer class or a name")
    kwargs = dict(optimizer_kwargs or {})
    if learning_rate is not None:
        kwargs["learning_rate"] = learning_rate
    return cls(**kwargs)


def disable_running_stats(model: nn.Module) -> None:
    """Freeze the running statistics of every ``nn.BatchNorm`` (momentum 0), as pytorch_optimizer's helper.

    The SAM family's ``step_with`` does this around the re-evaluation(s) at perturbed weights (the statistics
    are updated by the first evaluation only) and restores them with :func:`enable_running_stats`.
    """
    for _, module in model.named_modules():
        if isinstance(module, nn.BatchNorm) and not hasattr(module, "_sam_backup_momentum"):
            module._sam_backup_momentum = module.momentum
            module.momentum = 0.0


def enable_running_stats(model: nn.Module) -> None:
    """Undo :func:`disable_running_stats`."""
    for _, module in model.named_modules():
        if isinstance(module, nn.BatchNorm) and hasattr(module, "_sam_backup_momentum"):
            module.momentum = module._sam_backup_momentum
            del module._sam_backup_momentum


# ---------------------------------------------------------------------------- the wrapper base
class Wrapper(OptimizerCore):
    """An optimizer that wraps ``self.inner``; see the module docstring for the state layout.

    It builds on :class:`mlx_optim.core.OptimizerCore` (state, tunables, validation), not on the per-leaf
    :class:`mlx_optim.base.Optimizer`: it has no learning rate of its own (``learning_rate`` is the inner
    optimizer's) and updates the whole tree in :meth:`apply_gradients`.

    Subclasses call ``super().__init__(optimizer, learning_rate=..., optimizer_kwargs=..., state_dtype=...)``,
    register their own tunables with ``_hyper`` and implement :meth:`wrap_update` (single-phase wrappers) or
    the :class:`Phased` protocol.
    """

    family: ClassVar[str] = "wrapper"
    groups_unsupported: ClassVar[str] = (
        "a wrapper's own operations act on the whole tree; give the groups to the inner optimizer, "
        "e.g. Lookahead(AdamW(..., groups=[...]))"
    )

    def __init__(
        self,
        optimizer: Any,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        state_dtype, _ = quantized.parse_state_dtype(type(self), state_dtype)  # a wrapper has no quantizable moments
        super().__init__(state_dtype=state_dtype)
        self.inner = build_inner(type(self).__name__, optimizer, learning_rate, optimizer_kwargs)
        self.needs_loss = bool(getattr(self.inner, "needs_loss", False))
        self._state["inner"] = self.inner.state
        self._state["slots"] = {}

    # ------------------------------------------------------------------ state plumbing
    @property
    def state(self) -> dict:
        return self._state

    @state.setter
    def state(self, state: dict) -> None:
        state = self._upgrade_state(dict(state))
        if "inner" in state:
            self.inner.state = state["inner"]
        state["inner"] = self.inner.state
        state.setdefault("slots", {})
        self._initialized = False
        self._state = state

    @property
    def learning_rate(self) -> mx.array:
        """The inner optimizer's learning rate (read and written through the wrapper)."""
        return self.inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.inner.learning_rate = value

    def init(self, parameters: dict) -> None:
        self._state["slots"] = _init_slots(parameters, self._state.get("slots"), self.init_single)
        self.inner.init(parameters)
        self._state["inner"] = self.inner.state
        self._initialized = True

    def init_single(self, parameter: mx.array, state: dict) -> None:
        """Per-parameter wrapper state (in ``state["slots"]``); none by default."""

    # ------------------------------------------------------------------ helpers for subclasses
    def inner_apply(self, gradients: Any, parameters: Any, loss: mx.array | None = None) -> Any:
        """One update of the inner optimizer; returns the new parameters."""
        if isinstance(self.inner, OptimizerCore):
            return self.inner.apply_gradients(gradients, parameters, loss=loss)
        return self.inner.apply_gradients(gradients, parameters)

    def _begin(self, gradients: Any, parameters: Any, loss: mx.array | None, advance: bool = True) -> Any:
        """Match the trees, initialise lazily, run schedules, advance the step, build ``self.hp``."""
        params = _match(gradients, parameters)
        if not self._initialized:
            self.init(params)
        if advance:
            self._refresh_schedules()
            self._state["step"] = self.step + 1
        self.hp = self._hyperparameters(loss)
        return params

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        params = self._begin(gradients, parameters, loss)
        return self.wrap_update(gradients, params, loss)

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        raise NotImplementedError


# ---------------------------------------------------------------------------- multi-phase steps
class Phased:
    """Mixin for optimizers whose step is ``num_phases`` gradient evaluations (SAM and friends).

    Subclasses set ``num_phases``, define ``phase(i, grads, params, loss) -> new_params`` and may set
    ``first_phase_needs_grad = False`` (BSAM's noise phase). ``self.transparent`` selects the calling form.
    """

    num_phases: ClassVar[int] = 2
    first_phase_needs_grad: ClassVar[bool] = True
    pause_running_stats: ClassVar[bool] = True
    transparent: bool = False

    def _setup_phases(self, transparent: bool) -> None:
        self.transparent = bool(transparent)
        if self.transparent:
            self.globals["calls"] = mx.array(0, mx.uint32)

    def phase(self, i: int, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        raise NotImplementedError

    def _run_phase(self, i: int, gradients: Any, parameters: Any, loss: mx.array | None) -> Any:
        params = self._begin(gradients, parameters, loss, advance=(i == 0))
        return self.phase(i, gradients, params, loss)

    def step_with(self, model: nn.Module, loss_and_grad_fn: Callable, *args: Any, **kwargs: Any) -> mx.array:
        if self.transparent:
            return OptimizerCore.step_with(self, model, loss_and_grad_fn, *args, **kwargs)
        first_loss = None
        try:
            for i in range(self.num_phases):
                if i == 0 and not self.first_phase_needs_grad:
                    grads = tree_map(mx.zeros_like, model.trainable_parameters())
                    loss = None
                else:
                    if first_loss is not None and self.pause_running_stats:
                        disable_running_stats(model)
                    loss, grads = loss_and_grad_fn(model, *args, **kwargs)
                    first_loss = loss if first_loss is None else first_loss
                model.update(self._run_phase(i, grads, model, loss))
        finally:
            enable_running_stats(model)
        return first_loss

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        if not self.transparent:
            raise ValueError(
                f"{type(self).__name__} evaluates the gradient {self.num_phases} times per step: call "
                "opt.step_with(model, loss_and_grad_fn, *batch), or build it with transparent=True to run "
                "one phase per update call"
            )
        params = _match(gradients, parameters)
        if not self._initialized:
            self.init(params)
        calls = self.globals["calls"]
        snapshot = tree_flatten(self._state)
        outs = []
        for i in range(self.num_phases):
            _assign(self._state, snapshot)
            new_params = self._run_phase(i, gradients, parameters, loss)
            outs.append((new_params, tree_flatten(self._state)))
        which = calls % self.num_phases
        new_params, flat = outs[-1]
        for i in range(self.num_phases - 2, -1, -1):
            cond = which == i
            new_params = select_tree(cond, outs[i][0], new_params)
            flat = [(k, mx.where(cond, a, b)) for (k, a), (_, b) in zip(outs[i][1], flat)]
        _assign(self._state, flat)
        self.globals["calls"] = calls + 1
        return new_params
