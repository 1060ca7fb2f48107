"""The capabilities of an optimizer class, declared and resolved in one place.

Declared by the class (attributes of :class:`mlx_optim.core.OptimizerCore`, where each one is documented):
``needs_loss``, ``compilable``, ``zero_compatible``, ``elementwise``, ``shared_tunables`` (with
``shared_tunables_reason``) and ``groups_unsupported``. Declared here, by registry name, for classes whose
capability depends on their configuration: :data:`ELEMENTWISE_UNLESS` (element-wise unless one of the listed
options is on; :mod:`mlx_optim.packed` packs them). Declared in :mod:`mlx_optim.quantized`: the quantizable
moments (``MOMENTS`` or a class attribute ``moment_state``).

:func:`capabilities` resolves all of them, with what follows from the class's code (whether the int8 / int4
moments are (de)quantized leaf by leaf, whether it is a wrapper), into a frozen :class:`Capabilities`.
Whether ZeRO can shard a configured instance also depends on its state (random keys): see
:func:`mlx_optim.distributed.zero_unsupported_reason`, which starts from ``zero_compatible``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mlx_optim import quantized
from mlx_optim.base import Optimizer
from mlx_optim.core import OptimizerCore

__all__ = ["Capabilities", "ELEMENTWISE_UNLESS", "REDUCING_FLAGS", "capabilities", "is_elementwise"]

# Options (constructor flags kept as attributes) that add a whole-tensor reduction to an otherwise element-wise
# update: AdaNorm (gradient norm), cautious masking (mask mean), gradient centralization (mean over axes).
REDUCING_FLAGS = ("adanorm", "cautious", "use_gc", "use_softplus_norm")

# Registered optimizers whose update is element-wise unless a reducing option is on: packed == unpacked bit for bit
# on every parity row without such an option, eager and compiled (tests/test_packed.py re-checks all of them).
# Left out: optimizers with per-leaf statistics (norms, trust ratios, factored or matrix state; EmoNeco's gradient
# norm in one loss mood, StableAdamW's per-tensor RMS clip: both were listed until tests/test_packed.py gave the
# leaves gradients of different scales), those whose
# prepare() reads per-leaf state, and those overriding step_with (Hessian-based, SAM, Lookahead).
# name -> the options that make the update non-element-wise.
ELEMENTWISE_UNLESS: dict[str, tuple[str, ...]] = dict.fromkeys(
    (
        "accsgd",
        "adabelief",
        "adabound",
        "adaboundw",
        "adadelta",
        "adagrad",
        "adam",
        "adamax",
        "adamc",
        "adamg",
        "adamod",
        "adamw",
        "adan",
        "adapnm",
        "adasmooth",
        "adopt",
        "aggmo",
        "alig",
        "asgd",
        "averagedsgd",
        "diffgrad",
        "emolynx",
        "emonavi",
        "exadam",
        "focus",
        "grams",
        "grokfastadamw",
        "kate",
        "laprop",
        "lion",
        "lomo",
        "madgrad",
        "msvag",
        "nadam",
        "nadamw",
        "padam",
        "pid",
        "pnm",
        "qhadam",
        "qhm",
        "radam",
        "rangerqh",
        "rangerva",
        "rmsprop",
        "rprop",
        "schedulefreeadamw",
        "schedulefreeradam",
        "schedulefreesgd",
        "sgd",
        "sgdw",
        "signsgd",
        "simplifiedademamix",
        "sparseadam",
        "srmm",
        "tiger",
        "vsgd",
        "yogi",
    ),
    REDUCING_FLAGS,
)


def no_reducing_flags(opt: Any) -> bool:
    """Whether none of :data:`REDUCING_FLAGS` is on in ``opt``."""
    return not any(getattr(opt, flag, False) for flag in REDUCING_FLAGS)


@dataclass(frozen=True)
class Capabilities:
    """What an optimizer class can do (see :func:`capabilities`).

    Args:
        needs_loss (bool): The update needs the loss value.
        compilable (bool): The update can run inside ``mx.compile`` (and is auto-fused on the CPU).
        zero_compatible (bool | None): ZeRO may shard the state (None: decided from the class, see
            :func:`mlx_optim.distributed.zero_unsupported_reason`).
        elementwise (bool): The update is element-wise in every configuration (may be packed).
        elementwise_unless (tuple[str, ...]): Otherwise, when non-empty: element-wise unless one of these
            options is on.
        shared_tunables (tuple[str, ...]): Tunables that cannot differ between parameter groups (``"*"``: all).
        groups_unsupported (str): Why the class takes no parameter groups (empty: it takes them).
        quantized_moments (Mapping[str, bool]): The state entries ``state_dtype="int8"`` / ``"int4"`` quantize,
            each with whether it is non-negative (empty: no quantized state).
        quantize_per_leaf (bool): Quantized moments are (de)quantized leaf by leaf inside ``apply_single``
            (otherwise for the whole tree before ``prepare``).
        wrapper (bool): The class wraps another optimizer (:class:`mlx_optim.wrappers.Wrapper`).
    """

    needs_loss: bool
    compilable: bool
    zero_compatible: bool | None
    elementwise: bool
    elementwise_unless: tuple[str, ...]
    shared_tunables: tuple[str, ...]
    groups_unsupported: str
    quantized_moments: MappingProxyType
    quantize_per_leaf: bool
    wrapper: bool

    @property
    def groups(self) -> bool:
        """Whether the class takes parameter groups."""
        return not self.groups_unsupported


def capabilities(optimizer: Any) -> Capabilities:
    """The :class:`Capabilities` of an mlx_optim optimizer class (or of an instance's class).

    Raises ``TypeError`` for anything else.
    """
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    if not issubclass(cls, OptimizerCore):
        raise TypeError(f"capabilities: {cls.__name__} is not an mlx_optim optimizer class")
    per_leaf = issubclass(cls, Optimizer)
    return Capabilities(
        needs_loss=bool(cls.needs_loss),
        compilable=bool(cls.compilable),
        zero_compatible=cls.zero_compatible,
        elementwise=bool(cls.elementwise),
        elementwise_unless=() if cls.elementwise else ELEMENTWISE_UNLESS.get(cls.name, ()),
        shared_tunables=tuple(cls.shared_tunables),
        groups_unsupported=cls.groups_unsupported,
        quantized_moments=MappingProxyType(quantized.moments_of(cls)),
        # the same rule as Optimizer.__init__'s _quantize_per_leaf
        quantize_per_leaf=per_leaf and cls.prepare is Optimizer.prepare and cls.apply_single is Optimizer.apply_single,
        wrapper=not per_leaf,
    )


def is_elementwise(opt: Any) -> bool:
    """Whether ``opt`` (as configured) is element-wise, so it may be packed (:func:`mlx_optim.packed.pack`)."""
    caps = capabilities(opt)
    if caps.elementwise:
        return True
    return bool(caps.elementwise_unless) and not any(getattr(opt, flag, False) for flag in caps.elementwise_unless)
