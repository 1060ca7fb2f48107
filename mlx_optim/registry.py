"""Name registry: ``load_optimizer``, ``get_supported_optimizers``, ``create_optimizer``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mlx_optim import _unsupported
from mlx_optim.base import Optimizer

__all__ = ["register", "load_optimizer", "get_supported_optimizers", "create_optimizer", "OPTIMIZERS"]

OPTIMIZERS: dict[str, type[Optimizer]] = {}

# pytorch_optimizer's default ban list plus MLX's normalization layers.
DEFAULT_WD_BAN_LIST = ("bias", "LayerNorm.bias", "LayerNorm.weight", "RMSNorm.weight", "GroupNorm", "BatchNorm")


def register(cls: type[Optimizer]) -> type[Optimizer]:
    """Class decorator: add ``cls`` to the registry under ``cls.name`` (lowercase)."""
    name = cls.name.lower()
    if not name:
        raise ValueError(f"{cls.__name__} has no registry name")
    if name in OPTIMIZERS and OPTIMIZERS[name] is not cls:
        raise ValueError(f"registry name {name!r} is taken by {OPTIMIZERS[name].__name__}")
    OPTIMIZERS[name] = cls
    return cls


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


def banned_paths(model: nn.Module, wd_ban_list: Sequence[str]) -> set[str]:
    """Paths of the parameters excluded from weight decay.

    Like pytorch_optimizer, a parameter is banned when a ban entry is a substring of
    its full path, of its module's class name, or of ``ClassName.param_name``.
    """
    banned = set()
    for module_path, module in model.named_modules():
        cls = type(module).__name__
        for pname in _direct_parameters(module):
            full = f"{module_path}.{pname}" if module_path else pname
            if any(b in pat for b in wd_ban_list for pat in (full, cls, f"{cls}.{pname}")):
                banned.add(full)
    return banned


def _check_listed_keywords(cls: type[Optimizer], kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` with the reason for a reference keyword listed in :mod:`mlx_optim._unsupported`."""
    import inspect

    accepted = inspect.signature(cls).parameters
    for key in kwargs:
        why = None if key in accepted else _unsupported.reason(cls, key)
        if why is not None:
            raise TypeError(f"{cls.__name__} does not take the reference keyword {key!r}: {why}")


def _direct_parameters(module: nn.Module) -> list[str]:
    return [k for k, v in module.items() if isinstance(v, mx.array)]


def create_optimizer(
    model: nn.Module,
    optimizer_name: str,
    learning_rate: Any = 1e-3,
    weight_decay: float = 0.0,
    wd_ban_list: Sequence[str] = DEFAULT_WD_BAN_LIST,
    use_lookahead: bool = False,
    **kwargs: Any,
) -> Optimizer:
    """Build the optimizer ``optimizer_name`` for ``model``.

    With ``weight_decay > 0`` the parameters matched by ``wd_ban_list`` (biases and
    normalization layers by default) are kept out of weight decay; MLX has no
    parameter groups, so this is a per-parameter filter on the optimizer.

    ``use_lookahead=True`` wraps the optimizer in :class:`mlx_optim.wrappers.Lookahead` with ``k``,
    ``alpha`` and ``pullback_momentum`` taken from ``kwargs`` (defaults 5, 0.5, ``"none"``), as
    pytorch_optimizer does; those keys reach the optimizer too only if its constructor has them.
    ``ranger`` and ``ranger21`` already contain Lookahead: they are not wrapped (a warning says so).
    A reference keyword that is not ported (``foreach``, ...) raises ``TypeError`` with the reason
    (:mod:`mlx_optim._unsupported`).
    """
    cls = load_optimizer(optimizer_name)
    lookahead_kwargs = {}
    if use_lookahead:
        import inspect

        accepted = inspect.signature(cls).parameters
        for key in ("k", "alpha", "pullback_momentum"):
            if key in kwargs:
                lookahead_kwargs[key] = kwargs[key] if key in accepted else kwargs.pop(key)
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    _check_listed_keywords(cls, kwargs)
    opt = cls(learning_rate=learning_rate, **kwargs)
    if weight_decay:
        banned = banned_paths(model, wd_ban_list)
        opt.decay_filter = lambda path: path not in banned
    if use_lookahead:
        if optimizer_name.lower() in ("ranger", "ranger21"):
            import warnings

            warnings.warn(
                f"{optimizer_name} already has a Lookahead variant; not wrapping it", UserWarning, stacklevel=2
            )
        else:
            from mlx_optim.wrappers import Lookahead

            opt = Lookahead(opt, **lookahead_kwargs)
    return opt
