"""The base class every mlx_optim optimizer subclasses.

It keeps the ``mlx.optimizers.Optimizer`` contract (``init_single`` /
``apply_single``, one state dict, ``_maybe_schedule``) and adds, once for all
optimizers:

* validation helpers whose ``ValueError`` names the argument, its value and the
  allowed range;
* tunable hyperparameters kept as arrays in ``state`` (so they can be schedules,
  can be changed after ``mx.compile`` traced the step, and are saved with the
  state), read in ``update_single`` through the per-step namespace ``self.hp``;
  all but ``learning_rate`` in ``state["_global"]``, apart from the parameters' state;
* parameter groups (``groups=`` on every constructor): other tunable values for
  the parameters a path selector picks, with their own ``self.hp`` per step;
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

import contextlib
import fnmatch
import inspect
import math
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from mlx_optim import functional as F
from mlx_optim import quantized, streams
from mlx_optim.docargs import args_span
from mlx_optim.streams import LeafStreams

__all__ = ["Optimizer", "ParamGroup", "GLOBAL_KEY", "check_range", "check_choice", "leaves"]

_LOW_PRECISION = (mx.bfloat16, mx.float16)

# The state entry holding everything that is not per-parameter: tunables, their complements, optimizer-global
# arrays (NAdam's momentum product, D-Adaptation's D, random keys, ...) and the parameter groups' values. An
# ``nn.Module`` never has a parameter whose name starts with an underscore, so it cannot clash with a model's.
GLOBAL_KEY = "_global"
# Top-level state entries besides the parameters': mlx.optimizers.Optimizer keeps ``step`` and
# ``learning_rate`` there (mlx-lm reads ``optimizer.learning_rate``).
RESERVED_KEYS = ("step", "learning_rate", GLOBAL_KEY)

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


# ---------------------------------------------------------------------------- parameter groups
def _positional_arity(fn: Callable) -> int:
    """How many positional arguments ``fn`` takes (2 for ``(path, parameter)`` predicates, else 1)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    return 2 if sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) >= 2 else 1


def group_selector(spec: Any, owner: str = "group") -> tuple[Callable[[str, mx.array], bool], str]:
    """``(match(path, parameter) -> bool, label)`` for a group's ``params`` selector.

    A selector is a glob on the parameter path (``fnmatch``; ``*`` also crosses dots, so ``"*.bias"`` is every
    bias), several globs joined by ``|`` or given as a list, or a predicate ``fn(path)`` /
    ``fn(path, parameter)``.
    """
    if isinstance(spec, str):
        patterns = [x.strip() for x in spec.split("|") if x.strip()]
    elif isinstance(spec, (list, tuple)) and all(isinstance(x, str) for x in spec):
        patterns = [x.strip() for x in spec if x.strip()]
    elif callable(spec):
        fn = spec if _positional_arity(spec) == 2 else (lambda path, p, f=spec: f(path))
        return (lambda path, p: bool(fn(path, p))), getattr(spec, "__name__", repr(spec))
    else:
        raise ValueError(
            f"{owner}: params={spec!r} must be a glob on the parameter path (e.g. '*.bias|*norm*'), "
            "a list of globs, or a predicate fn(path) / fn(path, parameter)"
        )
    if not patterns:
        raise ValueError(f"{owner}: params={spec!r} holds no pattern")
    label = "|".join(patterns)
    return (lambda path, p: any(fnmatch.fnmatchcase(path, pat) for pat in patterns)), label


def _same(a: Any, b: Any) -> bool:
    """Whether two state values are equal (arrays: same shape, dtype and bits)."""
    if isinstance(a, mx.array) and isinstance(b, mx.array):
        return a.shape == b.shape and a.dtype == b.dtype and bool(mx.array_equal(a, b, equal_nan=True))
    return a is b


def _store_complement(target: dict, name: str, value: Any, current: mx.array) -> None:
    """``target["one_minus_<name>"]``: ``1 - value`` in double for a constant, ``1 - current`` for a schedule."""
    key = "one_minus_" + name
    if callable(value):
        target[key] = 1 - current
    else:  # a Python number, or a 0-d array (float() of it is exact: float32 -> double)
        target[key] = mx.array(1.0 - float(value), mx.float32)


class _Group:
    """One parameter group's configuration (its values live in ``state["_global"]["groups"][index]``)."""

    def __init__(self, index: int, spec: Any, match: Callable, label: str, name: str | None):
        self.index, self.spec, self.match, self.label, self.name = index, spec, match, label, name
        self.names: list[str] = []  # the overridden tunables
        self.zero: set[str] = set()  # overridden with the constant 0.0: their math is skipped in this group

    def describe(self) -> str:
        return f"group {self.index}" + (f" {self.name!r}" if self.name else "") + f" (params={self.label!r})"


class ParamGroup:
    """A view of one parameter group: ``group["learning_rate"]`` reads the group's current value (its
    override, or the optimizer's), ``group["weight_decay"] = 0.0`` sets an override (in the state: saved,
    and read by an already compiled step). Tuple keywords read and set all their members
    (``group["betas"] = (0.9, 0.95)``). Attribute access works too (``group.learning_rate``)."""

    def __init__(self, opt: Optimizer, group: _Group):
        object.__setattr__(self, "_opt", opt)
        object.__setattr__(self, "_group", group)

    @property
    def index(self) -> int:
        return self._group.index

    @property
    def name(self) -> str | None:
        return self._group.name

    @property
    def params(self) -> Any:
        """The selector the group was built with."""
        return self._group.spec

    @property
    def overrides(self) -> dict[str, mx.array]:
        """The tunables this group overrides, with their current values."""
        own = self._opt._group_state(self._group)
        return {n: own[n] for n in self._group.names}

    def paths(self) -> list[str]:
        """The parameter paths in this group (known after the first update or ``init``)."""
        return [p for p, i in self._opt._leaf_groups.items() if i == self._group.index]

    def __getitem__(self, key: str) -> Any:
        names = [n for n, _ in self._opt._resolve_override(self._group, key, None, check_value=False)]
        values = tuple(self._opt._group_value(self._group, n) for n in names)
        return values[0] if len(names) == 1 and names[0] == key else values

    def __setitem__(self, key: str, value: Any) -> None:
        self._opt._set_override(self._group, key, value)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except TypeError as e:
            raise AttributeError(str(e)) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={float(v):g}" for k, v in self.overrides.items())
        return f"ParamGroup({self._group.describe()}: {shown})"


def _groups_arg_doc(cls: type) -> str:
    """The ``Args:`` entry of the ``groups`` keyword the metaclass adds to ``cls``'s constructor."""
    text = (
        'groups (list[dict] | None): Parameter groups, ``[{"params": selector, <tunable>: value, ...}]``: '
        "the selected parameters (a glob on their path, several joined by ``|`` or in a list, or a predicate "
        "``fn(path)``) use these values of "
        "the tunable hyperparameters instead of the constructor's (see :meth:`mlx_optim.base.Optimizer.set_groups`)."
    )
    shared = getattr(cls, "shared_tunables", ())
    if "*" in shared:
        text += " No tunable may differ between groups here: " + cls.shared_tunables_reason + "."
    elif shared:
        names = ", ".join(f"``{n}``" for n in shared)
        text += f" Not per group here: {names} ({cls.shared_tunables_reason})."
    return text + " Default ``None``."


def document_groups(cls: type) -> type:
    """Append the ``groups`` keyword to the ``Args:`` section of ``cls``'s own docstring (once), when the
    metaclass adds it to the signature and the docstring does not document it already."""
    doc = cls.__dict__.get("__doc__")
    if not doc or getattr(cls, "groups_unsupported", "") or "groups" not in inspect.signature(cls).parameters:
        return cls
    lines = doc.split("\n")
    span = args_span(lines)
    if span is None:
        return cls
    start, end, indent = span
    entries = [line.strip() for line in lines[start + 1 : end]]
    if any(e.startswith(("groups:", "groups (")) for e in entries):
        return cls
    pad = " " * (indent + 4)
    words, out, line = _groups_arg_doc(cls).split(" "), [], pad
    for w in words:  # wrap at 116 columns (the docstring's own indentation included)
        if len(line) + len(w) + 1 > 116 and line.strip():
            out.append(line.rstrip())
            line = pad + "    "
        line += w + " "
    out.append(line.rstrip())
    cls.__doc__ = "\n".join(lines[:end] + out + lines[end:])
    return cls


class _OptimizerType(type):
    """Metaclass of :class:`Optimizer`: every constructor takes ``groups=`` (see :meth:`Optimizer.set_groups`),
    applied once the instance is fully built, and ``inspect.signature`` shows it."""

    def __call__(cls, *args: Any, groups: Sequence[Mapping] | None = None, **kwargs: Any) -> Any:
        if groups is not None and cls.groups_unsupported:
            raise TypeError(f"{cls.__name__} takes no parameter groups: {cls.groups_unsupported}")
        opt = super().__call__(*args, **kwargs)
        opt.__dict__["_init_args"] = (args, kwargs)  # a group's twin is built from them (Optimizer.set_groups)
        if groups is not None:
            opt.set_groups(groups)
        return opt

    @property
    def __signature__(cls) -> inspect.Signature:
        explicit = getattr(cls, "_explicit_signature", None)
        if explicit is None:
            params = list(inspect.signature(cls.__init__).parameters.values())[1:]
            explicit = inspect.Signature(params)
        params = list(explicit.parameters.values())
        if cls.groups_unsupported or any(p.name == "groups" for p in params):
            return explicit
        extra = inspect.Parameter("groups", inspect.Parameter.KEYWORD_ONLY, default=None)
        at = next((i for i, p in enumerate(params) if p.kind == p.VAR_KEYWORD), len(params))
        return explicit.replace(parameters=params[:at] + [extra] + params[at:])

    @__signature__.setter
    def __signature__(cls, value: inspect.Signature) -> None:
        type.__setattr__(cls, "_explicit_signature", value)


class Optimizer(optim.Optimizer, metaclass=_OptimizerType):
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

    State layout: ``state["step"]`` and ``state["learning_rate"]`` where
    ``mlx.optimizers.Optimizer`` keeps them, one entry per parameter (shaped like the parameter tree), and
    ``state["_global"]`` (:data:`GLOBAL_KEY`) holding the other tunables, their complements, the optimizer's
    global arrays and, with parameter groups, ``state["_global"]["groups"]`` (one dict of overrides per group).
    Optimizers keep their global arrays in ``self.globals`` (that dict). A state saved before this layout (every
    tunable and global array at the top level) is converted when assigned to ``opt.state``.

    Parameter groups: every constructor takes ``groups=[{"params": selector, <tunable>: value, ...}, ...]``
    (see :meth:`set_groups`).
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
    # Tunables that cannot differ between parameter groups, because the whole-tree pass (``prepare``) or the
    # reference reads them once for all parameters (e.g. D-Adaptation's estimate of D): overriding one in a group
    # raises TypeError naming the reason in ``shared_tunables_reason``. ``("*",)``: all of them.
    shared_tunables: ClassVar[tuple[str, ...]] = ()
    shared_tunables_reason: ClassVar[str] = "it is read once for the whole parameter tree"
    # Non-empty: the class takes no parameter groups, and this says why (and what to do instead).
    groups_unsupported: ClassVar[str] = ""

    def __init__(self, learning_rate: Tunable, *, maximize: bool = False, state_dtype: mx.Dtype | None = None):
        super().__init__()
        object.__setattr__(self, "_tunables", [])
        object.__setattr__(self, "_complemented", [])  # tunables in [0, 1] with a double-precision 1 - x
        object.__setattr__(self, "_bounds", {})  # tunable -> (low, high, interval), to validate group overrides
        self._state[GLOBAL_KEY] = {}
        self._zero = set()  # tunables fixed at 0.0 at construction: their math is skipped
        self._param_groups: list[_Group] = []
        self._group_schedulers: dict[tuple[int, str], Schedule] = {}
        self._group_hps: list[Hyper] = []
        self._leaf_groups: dict[str, int | None] = {}  # leaf path -> group index (None: the constructor's values)
        self._group_check = True  # init() raises for a group that matches no parameter (ZeRO checks the full tree)
        self._globals_scope: Any = None  # a group's view of self.globals while its step_scalars run
        self._group: _Group | None = None  # the group of the leaf (or of the step_scalars call) being processed
        self.maximize = bool(maximize)
        # "int8" / "int4" / a QuantizedState: blockwise-quantized moments (mlx_optim.quantized), float32 otherwise
        state_dtype, self.state_quantization = quantized.parse_state_dtype(type(self), state_dtype)
        self.state_dtype = state_dtype
        self._quantized_moments = quantized.moments_of(type(self))  # {entry: non-negative} of the quantizable moments
        self._quantized_leaves: dict[int, tuple[dict, list]] = {}  # during a step: leaves with dequantized moments
        self._quantized_after: list[mx.array] = []  # the arrays the next leaf's dequantization waits for
        cls = type(self)
        self._quantize_per_leaf = cls.prepare is Optimizer.prepare and cls.apply_single is Optimizer.apply_single
        # Stochastic rounding of bfloat16 state (mlx_optim.precision): on by default; its key lives in state.
        self.stochastic_rounding = (state_dtype is not None and state_dtype == mx.bfloat16) or (
            self.state_quantization is not None and self.state_quantization.stochastic
        )
        if self.stochastic_rounding:
            self.globals["rounding_key"] = mx.random.key(0)
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
        self._bounds[name] = (low, high, interval)
        if callable(value):
            self._schedulers[name] = value
            value = value(self.step)
        self._slot(name)[name] = value
        self._tunables.append(name)
        if low is not None and high is not None and low >= 0.0 and high <= 1.0:
            self._set_complement(name, given)

    def _slot(self, name: str) -> dict:
        """The dict holding the tunable ``name``: the top level for ``learning_rate`` (where
        ``mlx.optimizers.Optimizer`` keeps it), ``state["_global"]`` for every other one."""
        return self._state if name == "learning_rate" else self._state[GLOBAL_KEY]

    @property
    def globals(self) -> dict:
        """The optimizer-global state (``state["_global"]``): tunables, complements and global arrays.

        While a parameter group's :meth:`step_scalars` run it is that group's view: reads fall back to the
        shared values, writes stay with the group (per-group running products, averaging weights, ...).
        """
        scope = self.__dict__.get("_globals_scope")
        return scope if scope is not None else self._state[GLOBAL_KEY]

    def tunable(self, name: str) -> mx.array:
        """The current value of the tunable ``name`` for the leaf being initialised or updated (its group's
        override, or the optimizer's value); for reads outside ``self.hp`` (e.g. in ``init_single``)."""
        group = self.__dict__.get("_group")
        if group is not None and name in group.names:
            return self._group_state(group)[name]
        return self._slot(name)[name]

    def _set_complement(self, name: str, value: Any) -> None:
        """Keep ``state["_global"]["one_minus_<name>"]`` (read as ``hp.one_minus_<name>``) for a tunable in [0, 1].

        References compute ``1 - beta`` from Python floats, in double precision; ``1 - beta`` from the float32
        ``beta`` differs by up to ``2^-24 / (1 - beta)`` relative: 1.3e-5 for 0.999, 1.7e-4 for 0.9999, enough to
        move an EMA's weights past a parity tolerance. So a constant's complement is computed once in double and
        stored; a scheduled one is ``1 - schedule(step)`` in float32, refreshed every step with the schedule.
        """
        if name not in self._complemented:
            self._complemented.append(name)
        _store_complement(self._state[GLOBAL_KEY], name, value, self._slot(name)[name])

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
            return self._slot(name)[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_tunables", ()) and name != "learning_rate":
            self._state[GLOBAL_KEY][name] = mx.array(value, mx.float32)
            if name in self._zero:  # its math was skipped in the fused trace: trace again
                self._zero.discard(name)
                self.__dict__.pop("_fused_fn", None)
            if name in self._complemented:
                self._set_complement(name, value)
            return
        if not name.startswith("_") and name not in ("hp", "state", "learning_rate"):
            # a changed option (tunables are state arrays, inputs of the trace): trace the fused update again
            self.__dict__.pop("_fused_fn", None)
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> dict:
        """The optimizer's state dict (see the class docstring for its layout)."""
        return self._state

    @state.setter
    def state(self, state: dict) -> None:
        self._initialized = False
        self._state = self._upgrade_state(state)

    def _upgrade_state(self, state: Any) -> Any:
        """Convert a state saved before ``state["_global"]`` existed (tunables and global arrays at the top
        level) in place, and add the entries a checkpoint lacks (e.g. groups defined since it was saved)."""
        fresh = self._state.get(GLOBAL_KEY) if isinstance(self._state, dict) else None
        if not isinstance(state, dict) or fresh is None:
            return state
        moved = state.get(GLOBAL_KEY)
        if not isinstance(moved, dict):
            moved = {}
            for k in list(state):
                if k in fresh and k not in RESERVED_KEYS and isinstance(state[k], mx.array):
                    moved[k] = state.pop(k)
            state[GLOBAL_KEY] = moved
        for k, v in fresh.items():
            moved.setdefault(k, v)
        return state

    # ------------------------------------------------------------------ parameter groups
    @property
    def groups(self) -> tuple[ParamGroup, ...]:
        """The parameter groups, as :class:`ParamGroup` views (empty without groups)."""
        return tuple(ParamGroup(self, g) for g in self._param_groups)

    def group_of(self, path: str) -> int | None:
        """The index of the group the parameter at ``path`` belongs to (``None``: the constructor's values);
        known after the first update or :meth:`init`."""
        return self._leaf_groups.get(path)

    def set_groups(self, groups: Sequence[Mapping]) -> None:
        """Give groups of parameters their own values of tunable hyperparameters (``groups=`` of every
        constructor calls this).

        Args:
            groups: a list of dicts. ``"params"`` selects the group's parameters by their path (as in
                ``tree_flatten``, e.g. ``"layers.0.attention.query_proj.bias"``): a glob (``"*.bias|*norm*"``;
                ``*`` also crosses dots), a list of globs, or a predicate ``fn(path)`` / ``fn(path, parameter)``.
                Every other key overrides a tunable for the group: any keyword the optimizer keeps as a tunable
                (``learning_rate``, ``weight_decay``, ``eps``, ``momentum``, ...; a tuple keyword such as
                ``betas`` sets all its members), a number or a schedule. An optional ``"name"`` labels the
                group. A parameter belongs to the first group whose selector matches it; parameters no group
                matches use the constructor's values.

        One optimizer, one step count and one state tree for all groups: whole-tree operations (global
        clipping, D-Adaptation's sums, wrappers such as Lookahead or SAM, ZeRO) see every parameter. The
        overrides live in ``state["_global"]["groups"]``: saved with the state, schedulable, and changeable
        after ``mx.compile`` through :attr:`groups` (``opt.groups[0]["learning_rate"] = 1e-4``). Per-step
        scalars (bias corrections, ...) are computed per group.

        Raises:
            TypeError: an override of an option that is not a tunable hyperparameter (a structural option such
                as ``amsgrad`` applies to the whole optimizer), of a tunable the optimizer reads once for the
                whole tree (``shared_tunables``), or an unknown keyword.
            ValueError: a malformed group or an out-of-range value; at the first update (or :meth:`init`), a
                selector that matches no parameter.
        """
        owner = type(self).__name__
        if self.groups_unsupported:
            raise TypeError(f"{owner} takes no parameter groups: {self.groups_unsupported}")
        if self._param_groups:
            raise ValueError(f"{owner}: the parameter groups are already set")
        if isinstance(groups, Mapping) or not isinstance(groups, (list, tuple)):
            raise ValueError(f"{owner}: groups must be a list of dicts, got {type(groups).__name__}")
        if not groups:
            return
        built, states = [], []
        for i, spec in enumerate(groups):
            if not isinstance(spec, Mapping) or "params" not in spec:
                raise ValueError(
                    f"{owner}: groups[{i}] must be a dict with a 'params' selector and the overrides, "
                    f"e.g. {{'params': '*.bias', 'weight_decay': 0.0}}; got {spec!r}"
                )
            name = spec.get("name")
            if name is not None and not isinstance(name, str):
                raise ValueError(f"{owner}: groups[{i}] name={name!r} must be a string")
            match, label = group_selector(spec["params"], f"{owner} groups[{i}]")
            group = _Group(i, spec["params"], match, label, name)
            self._param_groups.append(group)
            built.append(group)
            states.append({})
        self._state[GLOBAL_KEY]["groups"] = states
        try:
            for group, spec in zip(built, groups):
                for key, value in spec.items():
                    if key not in ("params", "name"):
                        self._set_override(group, key, value)
                self._derive_from_twin(group, spec)
        except Exception:
            self._param_groups.clear()
            del self._state[GLOBAL_KEY]["groups"]
            raise
        self.__dict__.pop("_fused_fn", None)

    def _group_state(self, group: _Group) -> dict:
        return self._state[GLOBAL_KEY]["groups"][group.index]

    def _group_value(self, group: _Group, name: str) -> mx.array:
        return self._group_state(group)[name] if name in group.names else self._slot(name)[name]

    def _resolve_override(self, group: _Group, key: str, value: Any, check_value: bool = True) -> list:
        """``[(tunable, value), ...]`` for the group option ``key`` (a tunable, or a tuple keyword such as
        ``betas`` -> ``beta1``, ``beta2``); TypeError for anything that cannot differ per group."""
        owner = f"{type(self).__name__} {group.describe()}"
        tunables = [t for t in self._tunables]
        if key in tunables:
            names, values = [key], [value]
        else:
            stem = key[:-1] if key.endswith("s") else None
            names = []
            while stem and f"{stem}{len(names) + 1}" in tunables:
                names.append(f"{stem}{len(names) + 1}")
            if not names:
                if key == "lr" and "learning_rate" in tunables:
                    raise TypeError(f"{owner}: the learning rate is 'learning_rate' here (not 'lr')")
                signature = inspect.signature(type(self)).parameters
                choices = ", ".join(t for t in tunables if not self._is_shared(t)) or "nothing"
                if key in signature:
                    raise TypeError(
                        f"{owner}: {key!r} is not a tunable hyperparameter of {type(self).__name__} as configured "
                        f"(a structural option applies to the whole optimizer); a group may override: {choices}"
                    )
                raise TypeError(f"{owner}: unknown option {key!r}; a group may override: {choices}")
            if check_value:
                if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                    raise TypeError(f"{owner}: {key}={value!r} must be a sequence of {len(names)} values")
                if len(value) != len(names):
                    raise ValueError(f"{owner}: {key}={tuple(value)!r} must have {len(names)} values")
                values = list(value)
            else:
                values = [None] * len(names)
        shared = [n for n in names if self._is_shared(n)]
        if shared and check_value:  # reading a shared tunable through a group view is fine
            raise TypeError(
                f"{owner}: {key!r} cannot differ between parameter groups in {type(self).__name__}: "
                f"{self.shared_tunables_reason}"
            )
        return list(zip(names, values))

    def _is_shared(self, name: str) -> bool:
        return name in self.shared_tunables or "*" in self.shared_tunables

    def _set_override(self, group: _Group, key: str, value: Any) -> None:
        """Validate and store the group override ``key = value`` (in the group's state dict)."""
        owner = f"{type(self).__name__} {group.describe()}"
        own = self._group_state(group)
        for name, v in self._resolve_override(group, key, value):
            low, high, interval = self._bounds.get(name, (None, None, "[]"))
            was_zero = name in self._group_zero(group)
            self._group_schedulers.pop((group.index, name), None)
            if callable(v):
                check_range(owner, name, float(v(mx.array(0))), low, high, interval)
                self._group_schedulers[(group.index, name)] = v
                own[name] = v(self.step)
                group.zero.discard(name)
            else:
                check_range(owner, name, v if not isinstance(v, mx.array) else v.item(), low, high, interval)
                own[name] = mx.array(float(v), mx.float32)
                if float(v) == 0.0 and name not in group.names:
                    group.zero.add(name)  # skipped like a constructor value of 0 (only when first set)
                elif float(v) != 0.0:
                    group.zero.discard(name)
            if name not in group.names:
                group.names.append(name)
                self.__dict__.pop("_fused_fn", None)  # a new state entry: trace again
            if name in self._complemented:
                _store_complement(own, name, v, own[name])
            if was_zero and name not in self._group_zero(group):
                self.__dict__.pop("_fused_fn", None)  # its math was skipped in the fused trace

    def _derive_from_twin(self, group: _Group, spec: Mapping) -> None:
        """Give ``group`` what the constructor derives from its values: build the optimizer with the group's
        values (its twin) and take the twin's tunables and global arrays that differ from this optimizer's.

        E.g. SOAP's ``shampoo_beta`` defaults to ``betas[1]`` (so it follows a group's ``betas``), AdaBound's
        base learning rate is the constructor's ``learning_rate`` (so a group's own).
        """
        args, kwargs = self.__dict__.get("_init_args", ((), {}))
        cls = type(self)
        signature = inspect.signature(cls)
        try:
            bound = dict(signature.bind_partial(*args, **kwargs).arguments)
        except TypeError:
            return
        for param in signature.parameters.values():
            if param.kind == param.VAR_POSITIONAL and bound.get(param.name):
                return  # not rebuildable by keyword
            if param.kind == param.VAR_KEYWORD:
                bound.update(bound.pop(param.name, {}))
        changed = {}
        for key, value in spec.items():
            if key in ("params", "name"):
                continue
            if key in signature.parameters:
                changed[key] = value
                continue
            stem = key.rstrip("0123456789")
            if stem != key and stem + "s" in signature.parameters:  # one member of a tuple keyword
                tuple_key = stem + "s"
                given = changed.get(tuple_key, bound.get(tuple_key, signature.parameters[tuple_key].default))
                if isinstance(given, Sequence) and not isinstance(given, str):
                    members = list(given)
                    index = int(key[len(stem) :]) - 1
                    if 0 <= index < len(members):
                        members[index] = value
                        changed[tuple_key] = tuple(members)
        if not changed:
            return
        try:
            twin = cls(**{**bound, **changed})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cls.__name__} {group.describe()}: {e}") from None
        mine, theirs = self._state[GLOBAL_KEY], twin._state[GLOBAL_KEY]
        own = self._group_state(group)
        for name in self._tunables:
            if name in group.names or name not in twin._tunables or self._is_shared(name):
                continue
            a, b = self._slot(name)[name], twin._slot(name)[name]
            if not _same(a, b):
                group.names.append(name)  # derived from the group's values: an override of its own
                own[name] = b
                if name in twin._schedulers:
                    self._group_schedulers[(group.index, name)] = twin._schedulers[name]
                if name in self._complemented:
                    own["one_minus_" + name] = theirs["one_minus_" + name]
        tunable_keys = set(self._tunables) | {"one_minus_" + t for t in self._tunables} | {"groups"}
        for key, value in theirs.items():
            if key not in tunable_keys and key in mine and not _same(mine[key], value):
                own[key] = value  # a global array made from constructor values: the group's own

    def _group_zero(self, group: _Group) -> set[str]:
        """The tunables whose math is skipped in ``group``: fixed at 0.0 there."""
        return (self._zero - set(group.names)) | group.zero

    def _assign_groups(self, parameters: Any) -> None:
        """Map every leaf path of ``parameters`` to its group (first match); raise for a group that matches none."""
        hits = [0] * len(self._param_groups)
        paths = []
        for path, _, p, _ in leaves(parameters, parameters, parameters):
            paths.append(path)
            i = self._match_group(path, p)
            if i is not None:
                hits[i] += 1
        if self._group_check:
            for group, n in zip(self._param_groups, hits):
                if n == 0:
                    shown = ", ".join(repr(p) for p in paths[:6]) + (", ..." if len(paths) > 6 else "")
                    raise ValueError(
                        f"{type(self).__name__}: {group.describe()} matches no parameter"
                        + (" that an earlier group did not already take" if group.index else "")
                        + f"; the parameter paths are {shown}"
                    )

    def _match_group(self, path: str, parameter: Any) -> int | None:
        if path not in self._leaf_groups:
            self._leaf_groups[path] = next((g.index for g in self._param_groups if g.match(path, parameter)), None)
        return self._leaf_groups[path]

    @contextlib.contextmanager
    def _in_group(self, group: _Group | None, hp: Hyper | None = None, globals_scope: Any = None) -> Iterator[None]:
        """Run with ``group``'s view: ``self.hp`` (when given), ``self._zero``, ``self.tunable`` and
        (for its step_scalars) ``self.globals``."""
        saved = self.hp, self._zero, self._group, self._globals_scope
        if hp is not None:
            self.hp = hp
        self._zero = self._group_zero(group)
        self._group, self._globals_scope = group, globals_scope
        try:
            yield
        finally:
            self.hp, self._zero, self._group, self._globals_scope = saved

    def _leaf_call(self, path: str, parameter: Any, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` for the leaf at ``path``, with its group's tunables and per-step scalars."""
        self._leaf_path = path
        i = self._match_group(path, parameter) if self._param_groups else None
        if i is None:
            return fn(*args)
        group = self._param_groups[i]
        with self._in_group(group, self._group_hps[i] if self._group_hps else None):
            return fn(*args)

    @property
    def use_momentum(self) -> bool:
        """The flag optimizers set at construction when they keep a momentum buffer only for ``momentum != 0``
        (as their references allocate it). In a parameter group that sets ``momentum``, it follows the
        group's value (fixed at 0.0: no buffer, as the references do per group)."""
        group = self.__dict__.get("_group")
        if group is not None and "momentum" in group.names:
            return "momentum" not in self._zero
        return self.__dict__.get("_use_momentum", False)

    @use_momentum.setter
    def use_momentum(self, value: bool) -> None:
        self.__dict__["_use_momentum"] = bool(value)

    def hp_for(self, path: str, parameter: Any = None) -> Hyper:
        """The per-step namespace of the leaf at ``path``: its parameter group's, or ``self.hp`` (for
        optimizers that walk the tree themselves instead of through ``update_single``)."""
        i = self._match_group(path, parameter) if self._param_groups else None
        return self.hp if i is None or not self._group_hps else self._group_hps[i]

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
        self._reserved_clash(parameters)
        object.__setattr__(self, "init_single", lambda parameter, state: None)  # build the empty tree only
        try:
            super().init(parameters)
        finally:
            del self.__dict__["init_single"]
        if self._param_groups:
            self._leaf_groups = {}
            self._assign_groups(parameters)
        packed = self.packer.init(self, parameters) if self.packer is not None else ()
        for path, _, p, s in leaves(parameters, parameters, self._state):
            if not s and path not in packed:
                self._leaf_call(path, p, self.init_single, p, s)
                if self.state_quantization is not None:
                    quantized.quantize_new_state(self.state_quantization, self._quantized_moments, p, s)
        nbytes = sum(v.nbytes for _, v in tree_flatten([parameters, self._state]) if isinstance(v, mx.array))
        streams.reserve_buffer_cache(2 * nbytes)  # each step's outputs are fresh buffers: keep the freed ones

    def _reserved_clash(self, gradients: Any) -> None:
        """A top-level parameter may not take a name the state itself uses (``step``, ``learning_rate``,
        ``_global``; ``packed`` when packing)."""
        if isinstance(gradients, dict):
            reserved = RESERVED_KEYS + (("packed",) if self.packer is not None else ())
            for k in gradients:
                if k in reserved or (k in self._state and not isinstance(self._state[k], (dict, list, tuple))):
                    raise ValueError(
                        f"top-level parameter '{k}' has a name the optimizer's state reserves "
                        f"({', '.join(reserved)}); nest the parameters one level deeper"
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
        separate passes (``benchmarks/suite.py`` compares both). Not automatic on a GPU (unmeasured there; the
        Metal/CUDA kernels of :mod:`mlx_optim.kernels` already fuse the hot paths). Set
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
        self._group_hps = []
        self._state.clear()  # in place: a caller's mx.compile(outputs=opt.state) holds this dict
        self._state.update(new_state)
        return new_params

    def _update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        self._refresh_schedules()
        self.state["step"] = self.step + 1
        self.hp = self._hyperparameters(loss)
        self._load_quantized(gradients, params)
        self._prepare(gradients, params)
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

    def _store_quantized(self, state: dict, new: mx.array | None = None) -> None:
        """Quantize a leaf's updated moments again (once its update is done). ``new``: the leaf's updated parameter.
        The next leaf dequantizes only after this leaf's new codes and new parameter exist, so this leaf's float32
        moments (which both read) are freed first: one leaf's float32 working set at a time, also across the
        update streams (mlx_optim.streams), which then run the quantized leaves one after the other (memory
        first; measured in benchmarks/peak_memory.py, see docs/memory.md)."""
        record = self._quantized_leaves.pop(id(state), None)
        if record is not None:
            stored = quantized.store_state(self.state_quantization, state, record[1], self._next_rounding_key)
            if self._quantize_per_leaf and stored:
                self._quantized_after = stored + ([new] if new is not None else [])
        elif new is not None and self._quantize_per_leaf:  # a float32 leaf in between: waited for too
            self._quantized_after = [*self._quantized_after, new]

    def _prepare(self, gradients: Any, params: Any) -> None:
        """:meth:`prepare`, then (with groups) the per-step values it put on ``self.hp`` copied to every group's."""
        if not self._group_hps:
            self.prepare(gradients, params)
            return
        before = dict(vars(self.hp))
        self.prepare(gradients, params)
        made = {k: v for k, v in vars(self.hp).items() if k not in before or before[k] is not v}
        for hp in self._group_hps:
            for k, v in made.items():
                setattr(hp, k, v)

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

    def _refresh_schedules(self) -> None:
        """Evaluate the scheduled tunables (and their complements) at the current step."""
        g = self._state[GLOBAL_KEY]
        for name, scheduler in self._schedulers.items():
            slot = self._slot(name)
            slot[name] = scheduler(self.step)
            if name in self._complemented:
                g["one_minus_" + name] = 1 - slot[name]
        for (i, name), scheduler in self._group_schedulers.items():
            own = g["groups"][i]
            own[name] = scheduler(self.step)
            if name in self._complemented:
                own["one_minus_" + name] = 1 - own[name]

    def _tunable_values(self, group: _Group | None = None) -> Hyper:
        """The tunables and the complements ``one_minus_<name>`` of those in [0, 1], as read by ``self.hp``
        (``group``'s values where it overrides them)."""
        g = self._state[GLOBAL_KEY]
        hp = Hyper(**{name: self._slot(name)[name] for name in self._tunables})
        for name in self._complemented:
            setattr(hp, "one_minus_" + name, g["one_minus_" + name])
        if group is not None:
            own = g["groups"][group.index]
            for name in group.names:
                setattr(hp, name, own[name])
                if name in self._complemented:
                    setattr(hp, "one_minus_" + name, own["one_minus_" + name])
        return hp

    def _hyperparameters(self, loss: mx.array | None) -> Hyper:
        # each group's first: its step_scalars read the shared global arrays as the previous step left them
        self._group_hps = [self._group_hyperparameters(group, loss) for group in self._param_groups]
        hp = self._tunable_values()
        hp.lr = hp.learning_rate
        hp.step = self._state["step"].astype(mx.float32)
        hp.loss = loss
        if self.stochastic_rounding:
            self.globals["rounding_key"], self._rounding_key = mx.random.split(self.globals["rounding_key"])
        self.step_scalars(hp)
        return self._finish_hyperparameters(hp)

    def _group_hyperparameters(self, group: _Group, loss: mx.array | None) -> Hyper:
        """``group``'s per-step namespace: its tunables, and the per-step scalars computed from them."""
        hp = self._tunable_values(group)
        hp.lr = hp.learning_rate
        hp.step = self._state["step"].astype(mx.float32)
        hp.loss = loss
        shared = self._state[GLOBAL_KEY]
        with self._in_group(group, hp, ChainMap(shared["groups"][group.index], shared)):
            self.step_scalars(hp)
            return self._finish_hyperparameters(hp)

    def _finish_hyperparameters(self, hp: Hyper) -> Hyper:
        if "weight_decay" not in self._zero and "weight_decay" in self._tunables:
            hp.decay_factor = 1 - hp.weight_decay * hp.lr  # decoupled decay's p * (1 - wd lr), once per step
        # Materialise the per-step scalars. Under mx.compile a scalar expression feeding an element-wise update is
        # otherwise fused into it and recomputed for every element (Adam's two bias-correction powf per element made
        # a compiled step many times slower on the CPU backend, benchmarks/suite.py); mx.contiguous is not fusable.
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
            fused = self.quantized_update(gradient, parameter, g, state)
            if fused is not None:
                return fused
            self._load_quantized_leaf(parameter, state, self._leaf_path)
        new = self.update_single(g, p, state)
        if self.state_quantization is not None:
            self._store_quantized(state, new)
        if self.state_dtype is not None and self.state_dtype != dtype:
            for k in sorted(state):  # sorted: the rounding keys must not depend on the order a loaded state has
                v = state[k]
                if isinstance(v, mx.array) and v.dtype == dtype:
                    state[k] = self.round_state(v)
        return new if new.dtype == parameter.dtype else new.astype(parameter.dtype)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        """Return the updated parameter; ``g`` and ``p`` are in the compute dtype."""
        raise NotImplementedError

    def quantized_update(self, gradient: mx.array, parameter: mx.array, g: mx.array, state: dict) -> mx.array | None:
        """A fused step of one leaf whose moments are still quantized (e.g. :func:`mlx_optim.native.adam_leaf`):
        the new parameter (in its dtype), with ``state`` updated; ``None`` (the default) runs the dequantize /
        ``update_single`` / quantize path.

        Args:
            gradient: the leaf's gradient as given.
            parameter: the leaf's parameter.
            g: the gradient ``update_single`` would get (compute dtype, negated with ``maximize``).
            state: the leaf's state, its moments still quantized.
        """
        return None

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

    def _adanorm_options(self, adanorm: bool, adanorm_r: Tunable, adam_debias: bool | None = None) -> None:
        """pytorch_optimizer's ``adanorm`` / ``adanorm_r`` keywords (and ``adam_debias`` where the reference has it):
        validate and keep them for :meth:`adanorm_grad`, :meth:`zero_state` and :meth:`adam_step_size`."""
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.adanorm = adanorm
        if adam_debias is not None:
            self.adam_debias = adam_debias

    def _rectify_options(self, n_sma_threshold: int, degenerated_to_sgd: bool, rectify: bool = True) -> None:
        """RAdam's rectification keywords (pytorch_optimizer's ``rectify``, ``n_sma_threshold``,
        ``degenerated_to_sgd``), kept for :meth:`adam_step_size`."""
        self.rectify, self.n_sma_threshold, self.degenerated_to_sgd = rectify, n_sma_threshold, degenerated_to_sgd

    def zero_state(self, parameter: mx.array, state: dict, *names: str, ams: str | None = None) -> None:
        """Zero buffers shaped like ``parameter`` for ``names``; ``state[ams]`` too when given (the AMSGrad maximum),
        and AdaNorm's running gradient norm when ``self.adanorm``."""
        for name in (*names, ams) if ams else names:
            state[name] = self.zeros(parameter)
        if getattr(self, "adanorm", False):
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def adanorm_grad(self, g: mx.array, state: dict) -> mx.array:
        """The gradient entering the first moment: AdaNorm's rescaled ``g`` when ``self.adanorm``, else ``g``."""
        return self.apply_adanorm(g, state, self.hp.adanorm_r) if self.adanorm else g

    def adam_step_size(self, hp: Hyper, step_size: Any, rectify: bool = True) -> mx.array:
        """``step_size`` times RAdam's factor :math:`r_t` (``rectify``; sets ``hp.rectified``), divided by
        :math:`1-\\beta_1^t` unless ``self.adam_debias``."""
        if rectify:
            scale, hp.rectified = F.rectified_scale(
                hp.beta2, hp.step, self.n_sma_threshold, self.degenerated_to_sgd, hp.one_minus_beta2
            )
            step_size = step_size * scale
        return step_size if self.adam_debias else step_size / hp.bias_correction("beta1")

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


def betas3(opt: Optimizer, betas: Sequence[float]) -> None:
    """Three betas as pytorch_optimizer validates them: beta1, beta2 in [0, 1), beta3 in [0, 1]."""
    betas = tuple(betas)
    if len(betas) != 3:
        raise ValueError(f"{type(opt).__name__}: betas={betas!r} must have 3 values")
    opt._betas(betas[:2], 2)
    opt._hyper("beta3", betas[2], 0.0, 1.0, "[]")


def state_copy(opt: Optimizer, parameter: mx.array) -> mx.array:
    """A copy of ``parameter`` in the state dtype."""
    return parameter.astype(opt.state_dtype or opt.compute_dtype(parameter))
