"""The registry of optimizers by name: the `@register` decorator, `load_optimizer`, `get_supported_optimizers`."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from typing import Any

from mlx_optim.base import Optimizer, document_groups

__all__ = ["register", "load_optimizer", "get_supported_optimizers", "OPTIMIZERS"]

OPTIMIZERS: dict[str, type[Optimizer]] = {}

# The values of ``Optimizer.family`` (``mlx-optim list --family``).
FAMILIES = (
    "adam",
    "adaptive",
    "learning-rate-free",
    "memory-efficient",
    "orthogonalized",
    "other",
    "preconditioned",
    "quasi-newton",
    "ranger",
    "sam",
    "second-order",
    "sgd",
    "sign",
    "wrapper",
)


def register(cls: type[Optimizer]) -> type[Optimizer]:
    """Class decorator: add ``cls`` to the registry under ``cls.name`` (lowercase)."""
    name = cls.name.lower()
    if not name:
        raise ValueError(f"{cls.__name__} has no registry name")
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.__name__}.family={cls.family!r} is not one of {FAMILIES}")
    if name in OPTIMIZERS and OPTIMIZERS[name] is not cls:
        raise ValueError(f"registry name {name!r} is taken by {OPTIMIZERS[name].__name__}")
    OPTIMIZERS[name] = cls
    return document_groups(cls)


def lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    """``table[name.lower()]``; an unknown name raises ``ValueError`` listing the closest names."""
    key = name.lower()
    if key not in table:
        close = difflib.get_close_matches(key, table, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; choose one of {', '.join(sorted(table))}"
        raise ValueError(f"unknown {kind} {name!r}{hint}")
    return table[key]


def filter_names(table: dict[str, Any], filters: str | Iterable[str] | None = None) -> list[str]:
    """The sorted keys of ``table`` matching any of the glob patterns ``filters`` (all when None)."""
    names = sorted(table)
    if filters is None:
        return names
    patterns = [filters] if isinstance(filters, str) else list(filters)
    return [n for n in names if any(fnmatch.fnmatch(n, pat.lower()) for pat in patterns)]


def load_optimizer(name: str) -> type[Optimizer]:
    """Return the optimizer class registered as ``name`` (case-insensitive).

    An unknown name raises ``ValueError`` listing the closest registered names.
    """
    return lookup(OPTIMIZERS, name, "optimizer")


def get_supported_optimizers(filters: str | Iterable[str] | None = None) -> list[str]:
    """Registered names, sorted; ``filters`` are glob patterns (e.g. ``"ada*"``) a name must match."""
    return filter_names(OPTIMIZERS, filters)
