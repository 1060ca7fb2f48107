"""``create_optimizer``: pytorch_optimizer's one-call construction (weight-decay ban list, Lookahead)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_optim import _unsupported
from mlx_optim.base import Optimizer, group_selector
from mlx_optim.registry import load_optimizer
from mlx_optim.wrappers import ApplyIfFinite, Lookahead

DEFAULT_WD_BAN_LIST = ("bias", "LayerNorm.bias", "LayerNorm.weight", "RMSNorm.weight", "GroupNorm", "BatchNorm")


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
    accepted = inspect.signature(cls).parameters
    for key in kwargs:
        why = None if key in accepted else _unsupported.reason(cls, key)
        if why is not None:
            raise TypeError(f"{cls.__name__} does not take the reference keyword {key!r}: {why}")


class _Paths:
    """A group selector matching exactly the given parameter paths."""

    def __init__(self, paths: set[str]):
        self.paths = frozenset(paths)

    def __call__(self, path: str) -> bool:
        return path in self.paths

    def __repr__(self) -> str:
        return f"<{len(self.paths)} banned paths>"


def _with_ban_groups(groups: list, banned: set[str], params: dict[str, mx.array]) -> list:
    """``groups`` plus the weight-decay ban: before each user group that does not set ``weight_decay``, the same
    group restricted to the banned parameters with ``weight_decay=0.0``; then a group of the other banned ones."""
    out = []
    for i, group in enumerate(groups):
        if isinstance(group, dict) and "params" in group and "weight_decay" not in group:
            match, label = group_selector(group["params"], f"create_optimizer groups[{i}]")
            chosen = {path for path in banned if match(path, params[path])}
            if chosen:
                name = group.get("name") or label
                out.append({**group, "params": _Paths(chosen), "weight_decay": 0.0, "name": f"{name}:no_decay"})
        out.append(group)
    out.append({"params": _Paths(banned), "weight_decay": 0.0, "name": "no_decay"})
    return out


def _direct_parameters(module: nn.Module) -> list[str]:
    return [k for k, v in module.items() if isinstance(v, mx.array)]


def create_optimizer(
    model: nn.Module,
    optimizer_name: str,
    learning_rate: Any = 1e-3,
    weight_decay: float = 0.0,
    wd_ban_list: Sequence[str] = DEFAULT_WD_BAN_LIST,
    use_lookahead: bool = False,
    apply_if_finite: int | None = None,
    **kwargs: Any,
) -> Optimizer:
    """Build the optimizer ``optimizer_name`` for ``model``.

    With ``weight_decay > 0`` the trainable parameters matched by ``wd_ban_list`` (biases and
    normalization layers by default) are kept out of weight decay: a parameter group with
    ``weight_decay=0.0`` (see :meth:`mlx_optim.base.Optimizer.set_groups`), as pytorch_optimizer's
    ``get_optimizer_parameters`` makes. ``groups`` in ``kwargs`` are kept: a banned parameter of a user group
    gets that group's values and no decay (unless the group sets ``weight_decay`` itself). For an optimizer
    whose weight decay cannot differ per group (``shared_tunables``) the ban is a ``decay_filter`` instead.

    ``use_lookahead=True`` wraps the optimizer in :class:`mlx_optim.wrappers.Lookahead` with ``k``,
    ``alpha`` and ``pullback_momentum`` taken from ``kwargs`` (defaults 5, 0.5, ``"none"``), as
    pytorch_optimizer does; those keys reach the optimizer too only if its constructor has them.
    ``ranger`` and ``ranger21`` already contain Lookahead: they are not wrapped (a warning says so).
    A reference keyword that is not ported (``foreach``, ...) raises ``TypeError`` with the reason
    (:mod:`mlx_optim._unsupported`).

    ``apply_if_finite=N`` (an integer >= 0) wraps the result, outermost, in
    :class:`mlx_optim.wrappers.ApplyIfFinite` with ``max_consecutive_errors=N``: a step whose gradients hold a
    NaN or an infinity leaves the parameters and the optimizer's state (Lookahead's too) untouched, until ``N``
    such steps in a row have been skipped (optax's ``apply_if_finite``). ``None`` (the default): no guard.
    """
    cls = load_optimizer(optimizer_name)
    lookahead_kwargs = {}
    if use_lookahead:
        accepted = inspect.signature(cls).parameters
        for key in ("k", "alpha", "pullback_momentum"):
            if key in kwargs:
                lookahead_kwargs[key] = kwargs[key] if key in accepted else kwargs.pop(key)
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    _check_listed_keywords(cls, kwargs)
    groups = list(kwargs.pop("groups", None) or ())
    opt = cls(learning_rate=learning_rate, **kwargs)
    banned = set()
    trainable = dict(tree_flatten(model.trainable_parameters()))
    if weight_decay:
        banned = banned_paths(model, wd_ban_list) & set(trainable)
    groupable = not opt.groups_unsupported and "weight_decay" in opt._tunables and not opt._is_shared("weight_decay")
    if banned and not groupable:
        excluded = frozenset(banned)
        opt.decay_filter = lambda path: path not in excluded
    elif banned:
        groups = _with_ban_groups(groups, banned, trainable)
    if groups:
        opt.set_groups(groups)
    if use_lookahead:
        if optimizer_name.lower() in ("ranger", "ranger21"):
            warnings.warn(
                f"{optimizer_name} already has a Lookahead variant; not wrapping it", UserWarning, stacklevel=2
            )
        else:
            opt = Lookahead(opt, **lookahead_kwargs)
    if apply_if_finite is not None:
        opt = ApplyIfFinite(opt, max_consecutive_errors=apply_if_finite)
    return opt
