"""Lookahead (pytorch_optimizer semantics) and holocron's Scout: slow weights synchronised every k steps."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_map

from mlx_optim import functional as F
from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Phased, Wrapper

__all__ = ["Lookahead", "Scout"]


def _positive_int(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name}={value!r} must be a positive integer")


class _SyncWrapper(Wrapper):
    """Shared plumbing: one inner update, then the wrapper's tree-level ``sync``."""

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        return self.sync(self.inner_apply(gradients, params, loss))

    def sync(self, fast: Any) -> Any:
        raise NotImplementedError

    def step_with(self, model, loss_and_grad_fn, *args, **kwargs):
        """Delegate to the inner optimizer's ``step_with`` (SAM-like inners evaluate twice), then sync."""
        if not (isinstance(self.inner, Phased) and not self.inner.transparent):
            return super().step_with(model, loss_and_grad_fn, *args, **kwargs)
        loss = self.inner.step_with(model, loss_and_grad_fn, *args, **kwargs)
        fast = model.trainable_parameters()
        self._begin(fast, fast, loss)
        model.update(self.sync(fast))
        return loss

    def _cdt(self, p: mx.array) -> mx.Dtype:
        return self.state_dtype or self.compute_dtype(p)


@register
@wrapper_args
class Lookahead(_SyncWrapper):
    r"""Lookahead: a wrapper that pulls the fast weights toward slow weights every ``k`` inner steps.

    .. math::
        \text{if } t \bmod k = 0:\quad \phi \leftarrow \theta + (1-\alpha)(\phi - \theta),\quad \theta \leftarrow \phi

    (:math:`\theta` fast weights after the inner step, :math:`\phi` slow weights), exactly as
    ``pytorch_optimizer.Lookahead`` (``lerp(fast, slow, 1 - alpha)``). ``pullback_momentum``: ``"reset"``
    zeroes the inner optimizer's momentum buffer at every sync, ``"pullback"`` interpolates it toward a slow
    copy the same way. The buffer is the inner state's ``"momentum_buffer"`` (``mlx_optim``'s SGD and torch's
    name), or ``"v"`` for ``mlx.optimizers.SGD``; for an inner optimizer without one both options do nothing,
    as in pytorch_optimizer (where they only touch ``momentum_buffer``). The slow weights live in ``state["slots"]`` and
    the "is this a sync step" decision is ``mx.where`` on the step counter, so the wrapper runs unchanged inside
    ``mx.compile`` and resumes exactly from a saved state. :meth:`backup_and_load_cache` / :meth:`clear_and_load_backup`
    swap the slow weights in for evaluation.

    With a SAM-like inner, :meth:`step_with` runs the inner's two-evaluation step and counts one Lookahead step
    per SAM step; with a transparent SAM inner every ``update`` call (one SAM phase) counts, so wrap the other
    way round, ``SAM(Lookahead(base), transparent=True)``, to count SAM steps.

    Paper: Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019,
    arXiv:1907.08610.

    Reference: ``pytorch_optimizer.Lookahead`` (parity-checked). Difference: slow weights of bf16/fp16
    parameters are kept in float32 (torch keeps them in the parameter dtype).

    Args:
        k: Number of inner steps between syncs (a positive integer). Default ``5``.
        alpha: Interpolation factor :math:`\alpha` from the slow weights toward the fast ones, in [0, 1).
            Default ``0.5``.
        pullback_momentum: ``"none"``, ``"reset"`` or ``"pullback"`` (above; the last two need a plain,
            unwrapped inner optimizer). Default ``"none"``.
        state_dtype: dtype of the slow weights (and slow momentum) (keyword-only); ``None``: float32 for
            bfloat16/float16 parameters, the parameter's dtype otherwise. The inner optimizer's state follows its
            own ``state_dtype``. Default ``None``.
    """

    name = "lookahead"
    reference = "pytorch_optimizer.Lookahead"

    def __init__(
        self,
        optimizer: Any,
        k: int = 5,
        alpha: float = 0.5,
        pullback_momentum: str = "none",
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        _positive_int(type(self).__name__, "k", k)
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self._hyper("alpha", alpha, 0.0, 1.0, "[)")
        self._choice("pullback_momentum", pullback_momentum, ("none", "reset", "pullback"))
        if pullback_momentum != "none" and isinstance(self.inner, Wrapper):
            raise ValueError("Lookahead: pullback_momentum needs the momentum buffer of a plain (unwrapped) optimizer")
        self.k = k
        self.pullback_momentum = pullback_momentum

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["slow_params"] = parameter.astype(self._cdt(parameter))
        if self.pullback_momentum == "pullback":
            state["slow_momentum"] = self.zeros(parameter)

    def backup_and_load_cache(self, model) -> None:
        """Keep the fast weights aside (on the Python side, not in ``state``) and load the slow weights into
        ``model``, e.g. to evaluate them; :meth:`clear_and_load_backup` puts the fast weights back."""
        if not self._initialized and not self._state.get("slots"):
            raise ValueError("Lookahead: no slow weights yet; take a step first")
        fast = model.trainable_parameters()
        self._backup = fast
        model.update(tree_map(lambda p, s: s["slow_params"].astype(p.dtype), fast, self._state["slots"]))

    def clear_and_load_backup(self, model) -> None:
        """Restore the fast weights saved by :meth:`backup_and_load_cache`."""
        backup = getattr(self, "_backup", None)
        if backup is None:
            raise ValueError("Lookahead: call backup_and_load_cache first")
        model.update(backup)
        self._backup = None

    def _momentum_key(self, inner_leaf: dict) -> str | None:
        if "momentum_buffer" in inner_leaf:
            return "momentum_buffer"
        if isinstance(self.inner, optim.SGD) and "v" in inner_leaf:
            return "v"
        return None

    def sync(self, fast: Any) -> Any:
        hp = self.hp
        now = F.every(hp.step, self.k)
        w = hp.one_minus_alpha

        def leaf(f: mx.array, slot: dict, inner_leaf: dict | None = None) -> mx.array:
            f32 = f.astype(self._cdt(f))
            slow = slot["slow_params"]
            new, slow_new = F.lookahead_select(f32, slow, F.lerp(f32, slow.astype(f32.dtype), w), now, chained=False)
            slot["slow_params"] = slow_new.astype(slow.dtype)
            key = None if inner_leaf is None else self._momentum_key(inner_leaf)
            if key is not None:
                buf = inner_leaf[key]
                if self.pullback_momentum == "reset":
                    inner_leaf[key] = mx.where(now, mx.zeros_like(buf), buf)
                else:
                    slow_m = slot["slow_momentum"]
                    new_m = F.lerp(buf, slow_m.astype(buf.dtype), w)
                    inner_leaf[key], slow_m_new = F.lookahead_select(buf, slow_m, new_m, now, chained=False)
                    slot["slow_momentum"] = slow_m_new.astype(slow_m.dtype)
            return new.astype(f.dtype)

        if self.pullback_momentum == "none":
            return tree_map(leaf, fast, self._state["slots"])
        return tree_map(leaf, fast, self._state["slots"], self.inner.state)


@register
@wrapper_args
class Scout(_SyncWrapper):
    r"""Scout: Lookahead whose sync rate adapts to how coherent the fast-weight trajectory was (holocron).

    Every inner step appends the fast weights to a per-parameter buffer that starts with the slow weights.
    Every ``sync_period`` steps, with :math:`u_j = \theta_j - \theta_{j-1}` the ``sync_period`` buffered
    updates of a parameter,

    .. math::
        s = \operatorname{mean}\Big(\frac{\operatorname{std}_j(u)}{\max_j |u - \bar u|}\Big),\quad
        c = \operatorname{mean}_{\text{params}}(s),\quad r = \max(1 - c,\ \text{sync\_rate}),\quad
        \phi \leftarrow \phi + r(\theta - \phi),\ \theta \leftarrow \phi

    (``std`` unbiased, as ``torch.std``), then the buffers restart from the new slow weights. The buffer is a
    fixed ``(sync_period + 1, *shape)`` float32 array per parameter (slot ``"buffer"``; its row 0 is the slow
    weights), so the step is compile-friendly. The slow weights live in ``state["slots"]`` and the "is this a sync step"
    decision is ``mx.where`` on the step counter, so the wrapper runs unchanged inside ``mx.compile`` and resumes
    exactly from a saved state.

    Paper: none; holocron's ``Scout`` wrapper.

    Reference: ``holocron.optim.wrapper.Scout``; holocron has no numeric tests, so parity is against a NumPy
    transcription of its algorithm. Deviation: where ``max_dev`` is 0 (all updates of an element equal)
    holocron divides 0 by 0; we count that element's ratio as 0.

    Args:
        sync_rate: Lower bound of the sync rate :math:`r`, in [0, 1]. Default ``0.5``.
        sync_period: Number of inner steps between syncs (a positive integer). Default ``6``.
        state_dtype: dtype of the trajectory buffer (keyword-only); ``None``: float32 for
            bfloat16/float16 parameters, the parameter's dtype otherwise. The inner optimizer's state follows its
            own ``state_dtype``. Default ``None``.
    """

    name = "scout"
    reference = "holocron.optim.wrapper.Scout (NumPy transcription)"

    def __init__(
        self,
        base_optimizer: Any,
        sync_rate: float = 0.5,
        sync_period: int = 6,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        if not isinstance(sync_rate, (int, float)) or not 0.0 <= sync_rate <= 1.0:
            raise ValueError(f"Scout: sync_rate={sync_rate!r}: expected positive float lower than 1")
        _positive_int(type(self).__name__, "sync_period", sync_period)
        super().__init__(
            base_optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self._hyper("sync_rate", sync_rate, 0.0, 1.0)
        self.sync_period = sync_period

    def init_single(self, parameter: mx.array, state: dict) -> None:
        p = parameter.astype(self._cdt(parameter))
        state["buffer"] = mx.broadcast_to(p[None], (self.sync_period + 1, *p.shape))

    def sync(self, fast: Any) -> Any:
        hp = self.hp
        n = self.sync_period
        pos = mx.remainder(hp.step - 1, n) + 1  # row written this step, 1..n
        now = pos == n
        slots = self._state["slots"]
        sims = []

        def record(f: mx.array, slot: dict) -> None:
            buf = slot["buffer"]
            rows = mx.arange(n + 1).reshape((-1,) + (1,) * f.ndim)
            buf = mx.where(rows == pos.astype(mx.int32), f.astype(buf.dtype)[None], buf)
            slot["buffer"] = buf
            sims.append(_scout_similarity(buf))

        tree_map(record, fast, slots)
        coherence = sum(sims) / len(sims)
        rate = mx.maximum(1.0 - coherence, hp.sync_rate)

        def leaf(f: mx.array, slot: dict) -> mx.array:
            buf = slot["buffer"]
            slow = buf[0]
            f32 = f.astype(buf.dtype)
            new_slow = slow + rate * (f32 - slow)
            first = (mx.arange(n + 1) == 0).reshape((-1,) + (1,) * f.ndim)
            slot["buffer"] = mx.where(now & first, new_slow[None], buf)
            return mx.where(now, new_slow, f32).astype(f.dtype)

        return tree_map(leaf, fast, slots)


def _scout_similarity(buf: mx.array) -> mx.array:
    """``mean(std(u, 0) / max|u - mean(u)|)`` over one parameter's buffered updates ``u`` (0/0 counted as 0)."""
    u = buf[1:] - buf[:-1]
    n = u.shape[0]
    dev = u - mx.mean(u, axis=0, keepdims=True)
    std = mx.sqrt(mx.sum(mx.square(dev), axis=0) / max(n - 1, 1))
    max_dev = mx.max(mx.abs(dev), axis=0)
    safe = mx.where(max_dev > 0, max_dev, 1.0)
    return mx.mean(mx.where(max_dev > 0, std / safe, 0.0))
