"""Optimizer keywords as JSON, so that a stored parity row can be rebuilt without the code that defined it.

Plain values (numbers, strings, booleans, ``None``, lists, string-keyed dicts) are stored as they are; a tuple as
``{"$tuple": [...]}``, an MLX dtype as ``{"$dtype": "float32"}``, a function as ``{"$fn": "module:qualname"}`` and a
``functools.partial`` as ``{"$partial": <function>, "args": [...], "kwargs": {...}}``. Functions are only stored
when they can be imported back from ``mlx_optim`` or ``mlx.core`` (row helpers live in
:mod:`mlx_optim.check.fns`); anything else raises :class:`NotPortable`.
"""

from __future__ import annotations

import functools
import importlib
import math
from typing import Any

import mlx.core as mx

__all__ = ["NotPortable", "decode", "encode"]

_MODULES = ("mlx_optim", "mlx.core")


class NotPortable(ValueError):
    """A value that cannot be stored as JSON and rebuilt from the installed package."""


def _fn_path(f: Any) -> str:
    module, qualname = getattr(f, "__module__", None), getattr(f, "__qualname__", None)
    if module == "mlx.core" or (module and module.split(".")[0] == "mlx_optim"):
        if qualname and "<" not in qualname and _import(f"{module}:{qualname}") is f:
            return f"{module}:{qualname}"
    raise NotPortable(f"{f!r} ({module}.{qualname}) cannot be imported from mlx_optim or mlx.core")


def _import(path: str) -> Any:
    module, _, qualname = path.partition(":")
    if not any(module == m or module.startswith(m + ".") for m in _MODULES):
        raise NotPortable(f"{path}: only functions of mlx_optim or mlx.core are loaded")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def encode(value: Any) -> Any:
    """``value`` as JSON-able data (see the module docstring); raises :class:`NotPortable`."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"$float": repr(value)}
        return value
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value) or any(k.startswith("$") for k in value):
            raise NotPortable(f"dict keys must be strings not starting with '$': {list(value)}")
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, mx.Dtype):
        return {"$dtype": str(value).rsplit(".", 1)[-1]}
    if isinstance(value, functools.partial):
        return {"$partial": _fn_path(value.func), "args": encode(list(value.args)), "kwargs": encode(value.keywords)}
    if callable(value):
        return {"$fn": _fn_path(value)}
    raise NotPortable(f"{type(value).__name__} value {value!r} has no JSON form")


def decode(data: Any) -> Any:
    """The value :func:`encode` stored."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$tuple" in data:
        return tuple(decode(v) for v in data["$tuple"])
    if "$dtype" in data:
        return getattr(mx, data["$dtype"])
    if "$float" in data:
        return float(data["$float"])
    if "$fn" in data:
        return _import(data["$fn"])
    if "$partial" in data:
        return functools.partial(_import(data["$partial"]), *decode(data["args"]), **decode(data["kwargs"]))
    return {k: decode(v) for k, v in data.items()}
