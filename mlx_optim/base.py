"""The base class every mlx_optim optimizer subclasses.

It keeps the ``mlx.optimizers.Optimizer`` contract (``init_single`` /
``apply_single``, one state dict, ``_maybe_schedule``) and adds, once for all
optimizers:

* validation helpers whose ``ValueError`` names the argument, its value and the
  allowed range;
* tunable hyperparameters kept as arrays in ``state`` (so they can be schedules,
  can be changed after ``mx.compile`` traced the step, and are saved with the
  state), read in ``update_single`` through the per-step namespace ``self.hp``;
* per-step scalars (bias corrections, ...) computed once per step in
  :meth:`Optimizer.step_scalars` instead of once per parameter;
* the dtype policy: float32 state and math for bf16/fp16 parameters
  (``state_dtype`` overrides), updated parameters keep their dtype; a
  bfloat16 ``state_dtype`` is written back with stochastic rounding
  (:mod:`mlx_optim.precision`);
* two hooks for :mod:`mlx_optim.packed` (one fused update over the small
  leaves of element-wise optimizers): the ``elementwise`` class attribute and
  ``self.packer``;
* shared math: weight decay modes, AMSGrad, cautious masking, gradient
  centralization, ``maximize``;
* gradient-tree checking with the offending path in the message;
* the calling convention for optimizers that need the loss or re-evaluate it:
  ``opt.update(model, grads, loss=loss)`` and
  ``opt.step_with(model, loss_and_grad_fn, *args)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from mlx_optim import functional as F
from mlx_optim import quantized, streams
from mlx_optim.streams import LeafStreams

__all__ = ["Optimizer", "check_range", "check_choice", "leaves"]

_LOW_PRECISION = (mx.bfloat16, mx.float16)

Schedule = Callable[[mx.array], mx.array]
Tunable = float | Schedule


def _fmt_interval(low: float | None, high: float | None, interval: str) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{interval[0]}{lo}, {hi}{interval[1]}"


def check_range(
    owner: str,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    interval: str = "[]",
) -> None:
    """Raise ``ValueError`` unless ``low <=/< value <=/< high``.

    ``interval`` is two characters, each ``[`` / ``]`` (closed) or ``(`` / ``)``
    (open), e.g. ``"[)"`` for ``low <= value < high``. ``None`` bounds are open.
    The message names the owner, the argument, its value and the allowed range.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: {name}={value!r} must be a number in {_fmt_interval(low, high, interval)}"
        ) from None
    ok = not math.isnan(v)
    if ok and low is not None:
        ok = v >= low if interval[0] == "[" else v > low
    if ok and high is not None:
        ok = v <= high if interval[1] == "]" else v < high
    if not ok:
        raise ValueError(f"{owner}: {name}={value!r} is out of range; allowed {_fmt_interval(low, high, interval)}")


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{owner}: {name}={value!r} is not allowed; choose one of {tuple(choices)}")


def _match(gradients: Any, parameters: Any, path: str = "") -> Any:
    """Return the sub-tree of ``parameters`` shaped like ``gradients``.

    Raises ``ValueError`` naming the first path where the trees disagree.
    """
    where = path or "<root>"
    if isinstance(gradients, (dict, list, tuple)) and len(gradients) == 0:
        return gradients  # an empty subtree (e.g. a module's list of strings) has nothing to match
    if isinstance(gradients, dict):
        if not isinstance(parameters, dict):
            raise ValueError(f"gradient tree does not match the parameters at '{where}': expected a dict there")
        out = {}
        for k, g in gradients.items():
            if k not in parameters:
                raise ValueError(f"gradient at '{path}{k}' has no matching parameter")
            out[k] = _match(g, parameters[k], f"{path}{k}.")
        return out
    if isinstance(gradients, (list, tuple)):
        if not isinstance(parameters, (list, tuple)) or len(parameters) < len(gradients):
            raise ValueError(f"gradient tree does not match the parameters at '{where}': list lengths differ")
        return type(gradients)(_match(g, p, f"{path}{i}.") for i, (g, p) in enumerate(zip(gradients, parameters)))
    if isinstance(gradients, mx.array):
        if not isinstance(parameters, mx.array):
            raise ValueError(f"gradient at '{where[:-1]}' has no matching parameter array")
        if gradients.shape != parameters.shape:
            raise ValueError(
                f"gradient at '{where[:-1]}' has shape {tuple(gradients.shape)} "
                f"but the parameter has shape {tuple(parameters.shape)}"
            )
        return parameters
    raise ValueError(f"gradient at '{where[:-1]}' is a {type(gradients).__name__}, expected an mx.array")


class Hyper(SimpleNamespace):
    """The per-step namespace ``self.hp``: tunables, their complements ``one_minus_<name>`` (for those in [0, 1]),
    ``step``, ``lr``, ``loss`` and what :meth:`Optimizer.step_scalars` adds; plus two helpers that use a tunable's
    double-precision complement when it has one."""

    def __getattr__(self, name: str) -> Any:
        # one_minus_<x> of a tunable without a tracked complement (or of a per-step scalar): 1 - x in float32
        if name.startswith("one_minus_") and name[10:] in self.__dict__:
            return 1 - self.__dict__[name[10:]]
        raise AttributeError(f"'Hyper' object has no attribute {name!r}")

    def bias_correction(self, name: str, step: Any = None) -> mx.array:
        """``1 - <name> ** step`` (default: this step), see :func:`mlx_optim.functional.bias_correction`."""
        step = self.step if step is None else step
        return F.bias_correction(getattr(self, name), step, getattr(self, "one_minus_" + name, None))

    def ema(self, avg: mx.array, x: mx.array, name: str) -> mx.array:
        """``<name> * avg + (1 - <name>) * x`` with the tunable ``<name>``."""
        return F.ema(avg, x, getattr(self, name), getattr(self, "one_minus_" + name, None))


class Optimizer(optim.Optimizer):
    """Base class of all mlx_optim optimizers.

    Subclasses implement :meth:`init_single` (fill the per-parameter ``state``
    dict; it receives the *parameter*, also on the lazy first update) and
    :meth:`update_single` (return the new parameter, computed in the compute
    dtype, updating ``state`` in place). Per-step scalars go in
    :meth:`step_scalars`; hyperparameters are read from ``self.hp``.

    Class attributes describe the optimizer for the registry and the docs:
    ``name`` (registry name), ``family``, ``reference`` (the class it is
    parity-checked against), ``needs_loss`` (the update needs the loss value)
    and ``compilable`` (its update can run inside ``mx.compile``).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "other"
    reference: ClassVar[str] = ""
    needs_loss: ClassVar[bool] = False
    compilable: ClassVar[bool] = True
    # ZeRO (leaf-sharded state): True when every cross-leaf sum goes through ``global_sum``; None: decided
    # from the class (see mlx_optim.distributed.zero_unsupported_reason).
    zero_compatible: ClassVar[bool | None] = None
    # True when update_single is element-wise for every configuration: no reductions over the tensor, no
    # shape- or path-dependent logic except decays(), and only parameter-shaped state. Such optimizers may be
    # packed (mlx_optim.packed); config-dependent cases are listed in mlx_optim.packed.ELEMENTWISE instead.
    elementwise: ClassVar[bool] = False

    def __init__(self, learning_rate: Tunable, *, maximize: bool = False, state_dtype: mx.Dtype | None = None):
        super().__init__()
        object.__setattr__(self, "_tunables", [])
        object.__setattr__(self, "_complemented", [])  # tunables in [0, 1] with a double-precision 1 - x
        self._zero = set()  # tunables fixed at 0.0 at construction: their math is skipped
        self.maximize = bool(maximize)
        # "int8" / "int4" / a QuantizedState: blockwise-quantized moments (mlx_optim.quantized), float32 otherwise
        state_dtype, self.state_quantization = quantized.parse_state_dtype(type(self), state_dtype)
        self.state_dtype = state_dtype
        self._quantized_moments = quantized.moments_of(type(self))  # {entry: non-negative} of the quantizable moments
        self._quantized_leaves: dict[int, tuple[dict, list]] = {}  # during a step: leaves with dequantized moments
        self._quantized_after: list[mx.array] = []  # the codes written last: the next leaf's dequantization waits
        cls = type(self)
        self._quantize_per_leaf = cls.prepare is Optimizer.prepare and cls.apply_single is Optimizer.apply_single
        # Stochastic rounding of bfloat16 state (mlx_optim.precision): on by default; its key lives in state.
        self.stochastic_rounding = (state_dtype is not None and state_dtype == mx.bfloat16) or (
            self.state_quantization is not None and self.state_quantization.stochastic
        )
        if self.stochastic_rounding:
            self.state["rounding_key"] = mx.random.key(0)
        self.packer = None  # an mlx_optim.packed.Packer: small leaves updated as one flat buffer
        self.update_streams: int | None = None  # CPU streams for the leaf updates (mlx_optim.streams); None: default
        self._streams: LeafStreams | None = None
        self.decay_filter: Callable[[str], bool] | None = None
        self.hp = Hyper()
        self._leaf_path = ""
        self._hyper("learning_rate", learning_rate, low=0.0)

    # ------------------------------------------------------------------ validation
    def _check(self, name: str, value: Any, low=None, high=None, interval: str = "[]") -> None:
        check_range(type(self).__name__, name, value, low, high, interval)

    def _choice(self, name: str, value: Any, choices: Sequence[Any]) -> None:
        check_choice(type(self).__name__, name, value, choices)

    def _hyper(self, name: str, value: Tunable, low=None, high=None, interval: str = "[]") -> None:
        """Validate a tunable scalar and keep it in ``state`` (it may be a schedule)."""
        given = value
        if callable(value):
            self._check(name, float(value(mx.array(0))), low, high, interval)
        else:
            self._check(name, value, low, high, interval)
            if float(value) == 0.0:
                self._zero.add(name)
            value = mx.array(float(value), mx.float32)
        self._maybe_schedule(name, value)
        self._tunables.append(name)
        if low is not None and high is not None and low >= 0.0 and high <= 1.0:
            self._set_complement(name, given)

    def _set_complement(self, name: str, value: Any) -> None:
        """Keep ``state["one_minus_<name>"]`` (read as ``hp.one_minus_<name>``) for a tunable in [0, 1].

        References compute ``1 - beta`` from Python floats, in double precision; ``1 - beta`` from the float32
        ``beta`` differs by up to ``2^-24 / (1 - beta)`` relative: 1.3e-5 for 0.999, 1.7e-4 for 0.9999, enough to
        move an EMA's weights past a parity tolerance. So a constant's complement is computed once in double and
        stored; a scheduled one is ``1 - schedule(step)`` in float32, refreshed every step with the schedule.
        """
        if name not in self._complemented:
            self._complemented.append(name)
        key = "one_minus_" + name
        if callable(value):
            self.state[key] = 1 - self.state[name]
        else:  # a Python number, or a 0-d array assigned later (float() of it is exact: float32 -> double)
            self.state[key] = mx.array(1.0 - float(value), mx.float32)

    def _betas(self, betas: Sequence[float], n: int | None = None, name: str = "betas", interval: str = "[)") -> None:
        """Validate a tuple of betas in [0, 1) and keep them as tunables ``beta1``, ``beta2``, ..."""
        betas = tuple(betas)
        if n is not None and len(betas) != n:
            raise ValueError(f"{type(self).__name__}: {name}={betas!r} must have {n} values")
        for i, b in enumerate(betas):
            self._hyper(f"beta{i + 1}", b, 0.0, 1.0, interval)

    def __getattr__(self, name: str) -> Any:
        tunables = self.__dict__.get("_tunables", ())
        if name in tunables:
            return self._state[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_tunables", ()) and name != "learning_rate":
            self._state[name] = mx.array(value, mx.float32)
            self._zero.discard(name)
            if name in self._complemented:
                self._set_complement(name, value)
            return
        if not name.startswith("_") and name not in ("hp", "state", "learning_rate"):
            # a changed option (tunables are state arrays, inputs of the trace): trace the fused update again
            self.__dict__.pop("_fused_fn", None)
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ dtypes
    def compute_dtype(self, parameter: mx.array) -> mx.Dtype:
        """float32 for low-precision parameters, the parameter's dtype otherwise."""
        return mx.float32 if parameter.dtype in _LOW_PRECISION else parameter.dtype

    def zeros(self, parameter: mx.array, shape: Sequence[int] | None = None) -> mx.array:
        """A zero state array for ``parameter`` in the state dtype."""
        dtype = self.state_dtype or self.compute_dtype(parameter)
        return mx.zeros(parameter.shape if shape is None else tuple(shape), dtype=dtype)

    def full(self, parameter: mx.array, value: float) -> mx.array:
        return mx.full(parameter.shape, value, dtype=self.state_dtype or self.compute_dtype(parameter))

    # ------------------------------------------------------------------ the update
    def update(self, model: nn.Module, gradients: dict, loss: mx.array | None = None) -> None:
        """Apply ``gradients`` to ``model``; ``loss`` is required by loss-driven optimizers."""
        model.update(self.apply_gradients(gradients, model, loss=loss))

    def step_with(self, model: nn.Module, loss_and_grad_fn: Callable, *args: Any, **kwargs: Any) -> mx.array:
        """One optimization step that evaluates ``loss_and_grad_fn`` itself.

        ``loss_and_grad_fn(model, *args, **kwargs)`` must return ``(loss, grads)``
        for the model's trainable parameters, as ``nn.value_and_grad(model, loss_fn)``
        does for a ``loss_fn(model, *args)``. Optimizers that evaluate the loss
        more than once per step (L-BFGS, SAM, Hessian-based ones) override this;
        for all others it is one evaluation and one :meth:`update`. Returns the
        loss of the first evaluation.
        """
        loss, grads = loss_and_grad_fn(model, *args, **kwargs)
        self.update(model, grads, loss=loss)
        return loss

    def init(self, parameters: dict) -> None:
        """Create the missing state for ``parameters`` (resumed entries are kept).

        Like ``mlx.optimizers.Optimizer.init``, but ``init_single`` runs with
        ``self._leaf_path`` set, so per-path choices (Muon's split, GaLore's
        projection filter, ...) can be made when the state is created.
        """
        object.__setattr__(self, "init_single", lambda parameter, state: None)  # build the empty tree only
        try:
            super().init(parameters)
        finally:
            del self.__dict__["init_single"]
        packed = self.packer.init(self, parameters) if self.packer is not None else ()
        for path, _, p, s in leaves(parameters, parameters, self._state):
            if not s and path not in packed:
                self._leaf_path = path
                self.init_single(p, s)
                if self.state_quantization is not None:
                    quantized.quantize_new_state(self.state_quantization, self._quantized_moments, p, s)
        nbytes = sum(v.nbytes for _, v in tree_flatten([parameters, self._state]) if isinstance(v, mx.array))
        streams.reserve_buffer_cache(2 * nbytes)  # each step's outputs are fresh buffers: keep the freed ones

    def _reserved_clash(self, gradients: Any) -> None:
        if isinstance(gradients, dict):
            for k in gradients:
                if k in self._state and not isinstance(self._state[k], (dict, list, tuple)):
                    raise ValueError(
                        f"top-level parameter '{k}' clashes with the optimizer's state entry of the same name; "
                        "nest the parameters one level deeper"
                    )

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        """Return the updated parameters (with the structure of ``gradients``).

        ``parameters`` may be a superset of ``gradients`` (e.g. the whole model).
        A gradient whose path or shape has no matching parameter raises
        ``ValueError`` naming the path.
        """
        if self.needs_loss and loss is None:
            raise ValueError(
                f"{type(self).__name__} needs the loss value: call opt.update(model, grads, loss=loss) "
                "or opt.step_with(model, loss_and_grad_fn, *batch)"
            )
        self._reserved_clash(gradients)
        params = _match(gradients, parameters)
        if not self._initialized:
            self.init(params)
        if self._fuses_updates():
            return self._fused_update(gradients, params, loss)
        return self._update(gradients, params, loss)

    # ------------------------------------------------------------------ fused (auto-compiled) updates
    fuse_updates: bool | None = None  # None: automatic (see _fuses_updates); True / False: forced

    def _fuses_updates(self) -> bool:
        """Whether ``apply_gradients`` runs its update as one ``mx.compile``d function.

        Automatic on the CPU for every optimizer whose update can run inside ``mx.compile`` (``compilable``;
        not L-BFGS): their update keeps no Python-level state that changes between steps, so one trace serves
        every step, and eagerly each leaf's element-wise work becomes a few fused kernels instead of dozens of
        separate passes. Measured on the LoRA tree (benchmarks/suite.py, eager): Adafactor 157 -> 46 ms, CAME
        163 -> 60, Prodigy 110 -> 35, Lamb 58 -> 33, AdEMAMix 62 -> 17. Not automatic on a GPU (unmeasured
        there; the Metal/CUDA kernels of :mod:`mlx_optim.kernels` already fuse the hot paths). Set
        ``opt.fuse_updates = False`` to run the plain update, or ``True`` to force it."""
        if self.fuse_updates is not None:
            return self.fuse_updates
        from mlx_optim import kernels  # noqa: PLC0415

        on_cpu = mx.default_device() == mx.cpu and kernels.backend() is None
        return on_cpu and self.packer is None and self.compilable

    def _fused_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
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
        self._state.clear()  # in place: a caller's mx.compile(outputs=opt.state) holds this dict
        self._state.update(new_state)
        return new_params

    def _update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        self._refresh_schedules()
        self.state["step"] = self.step + 1
        self.hp = self._hyperparameters(loss)
        self._load_quantized(gradients, params)
        self.prepare(gradients, params)
        if self.packer is not None:
            new = self.packer.apply(self, gradients, params)
        else:
            self._streams = LeafStreams.for_step(self.update_streams)
            try:
                new = self._apply_with_paths(gradients, params, self.state, "")
            finally:
                self._streams = None
        for state, _ in list(self._quantized_leaves.values()):  # leaves whose apply_single did not store them
            self._store_quantized(state)
        return new

    def _load_quantized(self, gradients: Any, params: Any) -> None:
        """Dequantize the int8 / int4 moments (mlx_optim.quantized): here, for every leaf before ``prepare``, when
        the optimizer overrides ``prepare`` or ``apply_single`` (they may read any leaf's state); otherwise in
        ``apply_single``, one leaf after the other (see :func:`mlx_optim.quantized.load_state`)."""
        self._quantized_leaves, self._quantized_after = {}, []
        if self.state_quantization is not None and not self._quantize_per_leaf:
            for path, _, p, s in leaves(gradients, params, self.state):
                self._load_quantized_leaf(p, s, path)

    def _load_quantized_leaf(self, parameter: mx.array, state: dict, path: str) -> None:
        loaded = quantized.load_state(
            self.state_quantization, self._quantized_moments, parameter, state, path, self._quantized_after
        )
        if loaded:
            self._quantized_leaves[id(state)] = (state, loaded)

    def _store_quantized(self, state: dict) -> None:
        """Quantize a leaf's updated moments again (once its update is done)."""
        record = self._quantized_leaves.pop(id(state), None)
        if record is not None:
            stored = quantized.store_state(self.state_quantization, state, record[1], self._next_rounding_key)
            if self._quantize_per_leaf:
                self._quantized_after = stored or self._quantized_after  # the next leaf waits for these

    def _apply_with_paths(self, g: Any, p: Any, s: Any, path: str) -> Any:
        """``apply_single`` over the tree; ``self._leaf_path`` is the current leaf's path (e.g. ``layers.0.weight``)."""
        if isinstance(g, dict):
            return {k: self._apply_with_paths(g[k], p[k], s[k], f"{path}{k}.") for k in g}
        if isinstance(g, (list, tuple)):
            return type(g)(self._apply_with_paths(a, b, c, f"{path}{i}.") for i, (a, b, c) in enumerate(zip(g, p, s)))
        self._leaf_path = path[:-1]
        i = self._streams.pick(g.size) if self._streams is not None else 0
        if i == 0:
            return self.apply_single(g, p, s)
        hp, self.hp = self.hp, self._streams.scalars(i, self.hp)
        try:
            with mx.stream(self._streams.streams[i]):  # independent leaves on several CPU threads (mlx_optim.streams)
                return self.apply_single(g, p, s)
        finally:
            self.hp = hp

    def _refresh_schedules(self) -> None:
        """Evaluate the scheduled tunables (and their complements) at the current step."""
        for name, scheduler in self._schedulers.items():
            self._state[name] = scheduler(self.step)
            if name in self._complemented:
                self._state["one_minus_" + name] = 1 - self._state[name]

    def _tunable_values(self) -> Hyper:
        """The tunables and the complements ``one_minus_<name>`` of those in [0, 1], as read by ``self.hp``."""
        hp = Hyper(**{name: self._state[name] for name in self._tunables})
        for name in self._complemented:
            setattr(hp, "one_minus_" + name, self._state["one_minus_" + name])
        return hp

    def _hyperparameters(self, loss: mx.array | None) -> Hyper:
        hp = self._tunable_values()
        hp.lr = hp.learning_rate
        hp.step = self._state["step"].astype(mx.float32)
        hp.loss = loss
        if self.stochastic_rounding:
            self.state["rounding_key"], self._rounding_key = mx.random.split(self._state["rounding_key"])
        self.step_scalars(hp)
        if "weight_decay" not in self._zero and "weight_decay" in self._tunables:
            hp.decay_factor = 1 - hp.weight_decay * hp.lr  # decoupled decay's p * (1 - wd lr), once per step
        # Materialise the per-step scalars. Under mx.compile a scalar expression feeding an element-wise update is
        # otherwise fused into it and recomputed for every element (Adam's two bias-correction powf per element made
        # a compiled step ~10x slower on the CPU backend, benchmarks/suite.py); mx.contiguous is not fusable.
        for k, v in vars(hp).items():
            if isinstance(v, mx.array) and v.ndim == 0:
                setattr(hp, k, mx.contiguous(v))
        return hp

    def global_sum(self, x: mx.array) -> mx.array:
        """Sum a partial reduction over the processes that share this optimizer's leaves.

        The identity, unless :class:`mlx_optim.distributed.ZeroRedundancyOptimizer` shards the leaves
        over ranks and sets ``sum_group``: then each rank's partial sum (over its own leaves) is
        ``all_sum``-ed, so whole-tree quantities (global norms, D-Adaptation's sums) are exact. Optimizers
        whose cross-leaf sums all go through here declare ``zero_compatible = True``.
        """
        group = getattr(self, "sum_group", None)
        return x if group is None else mx.distributed.all_sum(x, group=group)

    def step_scalars(self, hp: Hyper) -> None:
        """Add per-step scalars (bias corrections, ...) to ``hp``; computed once per step."""

    def prepare(self, gradients: dict, parameters: dict) -> None:
        """Hook for global reductions over the whole tree before the per-leaf updates."""

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        dtype = self.compute_dtype(parameter)
        g = gradient if gradient.dtype == dtype else gradient.astype(dtype)
        if self.maximize:
            g = -g
        p = parameter if parameter.dtype == dtype else parameter.astype(dtype)
        if self._quantize_per_leaf and self.state_quantization is not None:
            self._load_quantized_leaf(parameter, state, self._leaf_path)
        new = self.update_single(g, p, state)
        if self._quantized_leaves:
            self._store_quantized(state)
        if self.state_dtype is not None and self.state_dtype != dtype:
            for k in sorted(state):  # sorted: the rounding keys must not depend on the order a loaded state has
                v = state[k]
                if isinstance(v, mx.array) and v.dtype == dtype:
                    state[k] = self.round_state(v)
        return new if new.dtype == parameter.dtype else new.astype(parameter.dtype)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        """Return the updated parameter; ``g`` and ``p`` are in the compute dtype."""
        raise NotImplementedError

    def round_state(self, v: mx.array) -> mx.array:
        """Cast an updated state array to ``state_dtype``: stochastic rounding when enabled, else nearest.

        Each call draws a fresh key from the one split off ``state["rounding_key"]`` for this step, so the
        rounding noise is independent per leaf and per state entry, reproducible, and the same under
        ``mx.compile``.
        """
        if not self.stochastic_rounding:
            return v.astype(self.state_dtype)
        from mlx_optim.precision import stochastic_round  # noqa: PLC0415 (precision imports nothing from here)

        return stochastic_round(v, self.state_dtype, self._next_rounding_key())

    def _next_rounding_key(self) -> mx.array:
        self._rounding_key, key = mx.random.split(self._rounding_key)
        return key

    # ------------------------------------------------------------------ shared math
    def _decay_options(self, weight_decay: Tunable, weight_decouple: bool = False, fixed_decay: bool = False) -> None:
        """The common weight-decay keywords (pytorch_optimizer's ``weight_decay``, ``weight_decouple``,
        ``fixed_decay``): validate and keep them for :meth:`decay_weights`."""
        self._hyper("weight_decay", weight_decay, 0.0)
        self.weight_decouple, self.fixed_decay = weight_decouple, fixed_decay

    def decay_weights(self, p: mx.array, g: mx.array, **kwargs: Any) -> tuple[mx.array, mx.array]:
        """:meth:`apply_weight_decay` in the mode chosen by the optimizer's ``weight_decouple`` / ``fixed_decay``."""
        return self.apply_weight_decay(p, g, decouple=self.weight_decouple, fixed=self.fixed_decay, **kwargs)

    def decays(self) -> bool:
        """Whether weight decay applies to the current leaf."""
        if "weight_decay" in self._zero:
            return False
        return self.decay_filter is None or self.decay_filter(self._leaf_path)

    def apply_weight_decay(
        self,
        p: mx.array,
        g: mx.array,
        *,
        decouple: bool,
        fixed: bool = False,
        ratio: Any = 1.0,
        lr: Any = None,
    ) -> tuple[mx.array, mx.array]:
        """Apply weight decay; returns ``(p, g)``.

        ``decouple``: shrink the parameter, ``p * (1 - wd * lr * ratio)`` (``fixed``:
        without ``lr``); otherwise fold the L2 penalty into the gradient.
        """
        if not self.decays():
            return p, g
        wd = self.hp.weight_decay
        if decouple and lr is None and not fixed and isinstance(ratio, float) and ratio == 1.0:
            factor = getattr(self.hp, "decay_factor", None)
            if factor is not None:
                return p * factor, g
        if decouple:
            return F.decoupled_decay(p, self.hp.lr if lr is None else lr, wd, fixed=fixed, ratio=ratio), g
        return p, F.coupled_decay(g, p, wd)

    @staticmethod
    def apply_amsgrad(state: dict, v: mx.array, key: str = "max_exp_avg_sq") -> mx.array:
        """AMSGrad: keep and return the running element-wise maximum of ``v``."""
        v_max = mx.maximum(state[key], v)
        state[key] = v_max
        return v_max

    @staticmethod
    def apply_adanorm(g: mx.array, state: dict, r: Any, key: str = "exp_grad_adanorm") -> mx.array:
        """AdaNorm: rescale ``g`` up to the running average of its norm (kept in ``state[key]``)."""
        g_norm = F.norm(g)
        avg = r * state[key] + (1 - r) * g_norm
        state[key] = avg
        return mx.where((g_norm > 0) & (avg > g_norm), g * (avg / g_norm), g)

    @staticmethod
    def apply_cautious(update: mx.array, g: mx.array) -> mx.array:
        return F.cautious_mask(update, g)

    @staticmethod
    def apply_gc(g: mx.array, conv_only: bool = False) -> mx.array:
        return F.centralize(g, conv_only=conv_only)


def leaves(gradients: Any, parameters: Any, state: Any, path: str = "") -> list[tuple[str, Any, Any, Any]]:
    """``(path, gradient, parameter, state)`` for every leaf, in the order the updates visit them.

    For :meth:`Optimizer.prepare` hooks that need a pass over the whole tree (global norms, two-pass updates).
    """
    if isinstance(gradients, dict):
        return [x for k in gradients for x in leaves(gradients[k], parameters[k], state[k], f"{path}{k}.")]
    if isinstance(gradients, (list, tuple)):
        return [x for i, t in enumerate(zip(gradients, parameters, state)) for x in leaves(*t, f"{path}{i}.")]
    return [(path[:-1], gradients, parameters, state)]
