"""Magma: momentum-aligned gradient masking of any optimizer's updates (pytorch_optimizer semantics)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_map

from mlx_optim import functional as F
from mlx_optim.core import OptimizerCore
from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Wrapper

__all__ = ["Magma", "cosine_similarity"]

_MOMENT_KEYS = ("exp_avg", "momentum_buffer")


def cosine_similarity(x: mx.array, y: mx.array, eps: float = 1e-8) -> mx.array:
    """Cosine of the angle between two tensors (flattened), each norm clamped below at ``eps`` (torch)."""
    x, y = x.reshape(-1).astype(mx.float32), y.reshape(-1).astype(mx.float32)
    nx = mx.maximum(mx.sqrt(mx.sum(x * x)), eps)
    ny = mx.maximum(mx.sqrt(mx.sum(y * y)), eps)
    return mx.sum((x / nx) * (y / ny))


@register
@wrapper_args
class Magma(Wrapper):
    r"""Magma: a wrapper that keeps each tensor's update at random, scaled by a momentum-gradient alignment.

    After the inner optimizer's (dense) step from :math:`\theta_{t-1}` to :math:`\tilde\theta_t`, per tensor

    .. math::
        a_t = \beta_a a_{t-1} + (1-\beta_a)\,\sigma\!\big(\cos(m_t, g_t)/\tau\big),\quad
        b_t \sim \text{Bernoulli}(p),\quad
        \theta_t = \theta_{t-1} + a_t b_t\,(\tilde\theta_t - \theta_{t-1})

    (:math:`a_0 = 1`, :math:`\beta_a` = ``alignment_ema``, :math:`p` = ``mask_prob``). :math:`m_t` is the
    inner optimizer's first moment after its step (see ``moment_key``), or Magma's own EMA :math:`m_t = \beta
    m_{t-1} + (1-\beta) g_t` (``momentum_beta``, slot ``"momentum"``) when the inner optimizer keeps none.
    :math:`g_t` is the raw gradient (before the inner optimizer's ``maximize``). The inner state is always
    updated, also when the update is masked. The mask is one Bernoulli draw per tensor from a key kept in
    ``state["key"]`` (``seed``), split every step, so a run is reproducible and compiles. Per-parameter slots:
    ``"alignment"`` (float32 scalar) and, when needed, ``"momentum"``.

    Paper: arXiv:2602.15322 (momentum-aligned gradient masking), 2026.

    Reference: ``pytorch_optimizer.Magma`` (its CPU, non-foreach path; ``lerp(new, old, 1 - a b)``;
    parity-checked). Differences: the mask draws differ from torch's, so parity replays our masks into the
    reference; the reference's ``foreach`` knob is dropped, and its "params instead of an optimizer" form (an
    AdamW) is ``Magma("adamw", learning_rate=...)`` here; ``exclude`` takes leaf paths or a predicate (torch: a
    set of tensors).

    Args:
        mask_prob: Probability :math:`p` of keeping a tensor's update in a step, in [0, 1]. Default ``0.5``.
        tau: Temperature :math:`\tau` of the sigmoid of the cosine similarity (> 0). Default ``2.0``.
        momentum_beta: Decay rate of Magma's own gradient EMA (used when the inner optimizer keeps no first
            moment), in [0, 1]. Default ``0.9``.
        alignment_ema: Decay rate :math:`\beta_a` of the alignment EMA, in [0, 1]. Default ``0.9``.
        moment_key: Which inner state entry is :math:`m_t`: ``"auto"`` looks for ``"exp_avg"`` then
            ``"momentum_buffer"`` (for a plain ``mlx.optimizers`` optimizer also ``"m"``, or ``"v"`` of
            ``mlx.optimizers.SGD`` with momentum); another string names the key; ``None`` always uses Magma's own
            EMA. Default ``"auto"``.
        exclude: Leaf paths (e.g. ``{"layers.0.bias"}``) or a predicate on the path; those leaves take the
            inner update unmasked. Default ``None``.
        seed: Seed of the mask's random key (keyword-only). Default ``0``.
    """

    name = "magma"
    reference = "pytorch_optimizer.Magma"

    def __init__(
        self,
        optimizer: Any,
        mask_prob: float = 0.5,
        tau: float = 2.0,
        momentum_beta: float = 0.9,
        alignment_ema: float = 0.9,
        moment_key: str | None = "auto",
        exclude: Collection[str] | Callable[[str], bool] | None = None,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        if moment_key is not None and not isinstance(moment_key, str):
            raise ValueError(f"Magma: moment_key={moment_key!r} must be a state key, 'auto' or None")
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self._hyper("mask_prob", mask_prob, 0.0, 1.0)
        self._hyper("tau", tau, 0.0, None, "(]")
        self._hyper("momentum_beta", momentum_beta, 0.0, 1.0)
        self._hyper("alignment_ema", alignment_ema, 0.0, 1.0)
        self.moment_key = moment_key
        if exclude is None:
            self._excluded: Callable[[str], bool] = lambda path: False
        elif callable(exclude):
            self._excluded = exclude
        else:
            names = frozenset(exclude)
            self._excluded = names.__contains__
        self._state["key"] = mx.random.key(seed)

    def _keys(self) -> tuple[str, ...]:
        if self.moment_key is None:
            return ()
        if self.moment_key != "auto":
            return (self.moment_key,)
        if isinstance(self.inner, OptimizerCore):
            return _MOMENT_KEYS
        sgd_momentum = isinstance(self.inner, optim.SGD) and float(self.inner.momentum) > 0
        return (*_MOMENT_KEYS, "m", *(("v",) if sgd_momentum else ()))

    def _moment_of(self, inner_leaf: Any) -> str | None:
        if not isinstance(inner_leaf, dict):
            return None
        return next((k for k in self._keys() if isinstance(inner_leaf.get(k), mx.array)), None)

    def init(self, parameters: dict) -> None:
        super().init(parameters)

        def leaf(p: mx.array, slot: dict, inner_leaf: Any = None) -> None:
            slot.setdefault("alignment", mx.ones((), mx.float32))
            if self._moment_of(inner_leaf) is None and "momentum" not in slot:
                slot["momentum"] = self.zeros(p)

        tree_map(leaf, parameters, self._state["slots"], self._inner_leaves(parameters))

    def _inner_leaves(self, params: Any) -> Any:
        state = self.inner.state
        try:
            return tree_map(lambda p, s: s, params, state, is_leaf=lambda x: isinstance(x, mx.array))
        except (KeyError, IndexError, TypeError):  # e.g. a wrapper's nested state: no per-leaf moments
            return tree_map(lambda p: None, params)

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        hp = self.hp
        new_params = self.inner_apply(gradients, params, loss)
        inner_leaves = self._inner_leaves(params)
        paths = []

        def collect(path: str, g: mx.array) -> None:
            paths.append(path)

        _walk(gradients, "", collect)
        keys = mx.random.split(self._state["key"], len(paths) + 1)
        self._state["key"] = keys[0]
        draws = {path: keys[i + 1] for i, path in enumerate(paths)}

        def leaf(path: str, g: mx.array, p: mx.array, new: mx.array, slot: dict, inner_leaf: Any) -> mx.array:
            if self._excluded(path):
                return new
            cdt = mx.float32 if p.dtype in (mx.bfloat16, mx.float16) else p.dtype
            key = self._moment_of(inner_leaf)
            if key is None:
                m = slot["momentum"]
                m = F.torch_lerp(m, g.astype(m.dtype), hp.one_minus_momentum_beta)
                slot["momentum"] = m
            else:
                m = inner_leaf[key]
            target = mx.sigmoid(cosine_similarity(m, g) / hp.tau)
            alignment = F.torch_lerp(slot["alignment"], target, hp.one_minus_alignment_ema)
            slot["alignment"] = alignment
            keep = mx.random.bernoulli(hp.mask_prob, key=draws[path]).astype(mx.float32)
            weight = (1.0 - alignment * keep).astype(cdt)
            return F.torch_lerp(new.astype(cdt), p.astype(cdt), weight).astype(p.dtype)

        return _zip_paths(leaf, gradients, params, new_params, self._state["slots"], inner_leaves)


def _walk(tree: Any, path: str, fn: Callable) -> None:
    if isinstance(tree, dict):
        for k, v in tree.items():
            _walk(v, f"{path}{k}.", fn)
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            _walk(v, f"{path}{i}.", fn)
    else:
        fn(path[:-1], tree)


def _zip_paths(fn: Callable, g: Any, *rest: Any, path: str = "") -> Any:
    """``fn(path, g, *rest_leaves)`` over the leaves of ``g`` (``rest`` trees may hold dicts at those leaves)."""
    if isinstance(g, dict):
        return {k: _zip_paths(fn, g[k], *(r[k] for r in rest), path=f"{path}{k}.") for k in g}
    if isinstance(g, (list, tuple)):
        return type(g)(_zip_paths(fn, x, *(r[i] for r in rest), path=f"{path}{i}.") for i, x in enumerate(g))
    return fn(path[:-1], g, *rest)
