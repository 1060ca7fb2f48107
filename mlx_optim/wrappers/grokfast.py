"""Grokfast gradient filters (pytorch_optimizer's ``gradfilter_ma`` / ``gradfilter_ema``) as wrappers."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx.utils import tree_map

from mlx_optim import functional as F
from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Wrapper

__all__ = ["GradFilterMA", "GradFilterEMA", "ring_buffer_push"]


def ring_buffer_push(buffer: mx.array, x: mx.array, step: mx.array) -> mx.array:
    """Write ``x`` into row ``(step - 1) mod W`` of a ``(W, *x.shape)`` ring buffer (``step`` is 1-based)."""
    window = buffer.shape[0]
    pos = mx.remainder(step - 1, window).astype(mx.int32)
    rows = mx.arange(window).reshape((-1,) + (1,) * x.ndim)
    return mx.where(rows == pos, x.astype(buffer.dtype)[None], buffer)


@register
@wrapper_args
class GradFilterMA(Wrapper):
    r"""Grokfast-MA: a wrapper that amplifies the slow component of the gradient with a windowed moving average.

    With :math:`G_t` the last ``window_size`` gradients (the current one included),

    .. math::
        \tilde g_t = g_t + \lambda\, \frac{1}{|G_t|}\sum_{g \in G_t} g \quad(\text{``filter_type="sum"``: no }
        1/|G_t|),

    applied only once the window is full when ``warmup`` (before that the gradient passes unchanged); the
    inner optimizer then steps on :math:`\tilde g_t`. The window is a fixed ``(window_size, *shape)`` ring
    buffer per parameter (slot ``"grads"``, float32 for bf16/fp16 parameters), so memory is ``window_size``
    times the parameters, as the reference's deques.

    Paper: Lee et al., "Grokfast: Accelerated Grokking by Amplifying Slow Gradients", arXiv:2405.20233, 2024.

    Reference: ``pytorch_optimizer.gradfilter_ma`` followed by the inner optimizer's ``step`` (parity-checked).
    pytorch_optimizer applies the filter as a function between ``backward`` and ``optimizer.step``, threading a
    dict of per-parameter queues / averages through the training loop; here it is a wrapper whose per-parameter
    filter state lives in ``state["slots"]``, so the whole step runs inside ``mx.compile`` and resumes exactly
    from a saved state. ``filter_type`` is checked with ``ValueError`` (the reference raises
    ``NotImplementedError``).

    Args:
        window_size: Number of gradients in the window (a positive integer). Default ``100``.
        lamb: Amplification factor :math:`\lambda` of the filtered gradient. Default ``5.0``.
        filter_type: ``"mean"`` (average over the window) or ``"sum"``. Default ``"mean"``.
        warmup: Leave the gradient unchanged until the window is full. Default ``True``.
    """

    name = "gradfilterma"
    reference = "pytorch_optimizer.gradfilter_ma"

    def __init__(
        self,
        optimizer: Any,
        window_size: int = 100,
        lamb: float = 5.0,
        filter_type: str = "mean",
        warmup: bool = True,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f"GradFilterMA: window_size={window_size!r} must be a positive integer")
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self._hyper("lamb", lamb)
        self._choice("filter_type", filter_type, ("mean", "sum"))
        self.window_size, self.filter_type, self.warmup = window_size, filter_type, bool(warmup)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grads"] = self.zeros(parameter, (self.window_size, *parameter.shape))

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        hp = self.hp
        count = mx.minimum(hp.step, self.window_size)
        active = hp.step >= self.window_size if self.warmup else mx.array(True)

        def leaf(g: mx.array, slot: dict) -> mx.array:
            buf = ring_buffer_push(slot["grads"], g, hp.step)
            slot["grads"] = buf
            avg = mx.sum(buf, axis=0)
            if self.filter_type == "mean":
                avg = avg / count
            g32 = g.astype(buf.dtype)
            return mx.where(active, g32 + hp.lamb * avg, g32).astype(g.dtype)

        return self.inner_apply(tree_map(leaf, gradients, self._state["slots"]), params, loss)


@register
@wrapper_args
class GradFilterEMA(Wrapper):
    r"""Grokfast-EMA: a wrapper that amplifies the slow component of the gradient with an exponential moving average.

    .. math::
        \mu_1 = g_1,\quad \mu_t = \mu_{t-1} + (1-\alpha)(g_t - \mu_{t-1}),\quad \tilde g_t = g_t + \lambda \mu_t,

    then the inner optimizer steps on :math:`\tilde g_t` (slot ``"ema"``, float32 for bf16/fp16 parameters).
    :class:`~mlx_optim.GrokFastAdamW` is this filter fused into AdamW.

    Paper: Lee et al., "Grokfast: Accelerated Grokking by Amplifying Slow Gradients", arXiv:2405.20233, 2024.

    Reference: ``pytorch_optimizer.gradfilter_ema`` followed by the inner optimizer's ``step``
    (parity-checked). pytorch_optimizer applies the filter as a function between ``backward`` and ``optimizer.step``,
    threading a dict of per-parameter queues / averages through the training loop; here it is a wrapper whose
    per-parameter filter state lives in ``state["slots"]``, so the whole step runs inside ``mx.compile`` and resumes
    exactly from a saved state.

    Args:
        alpha: Decay rate :math:`\alpha` of the gradient EMA, in [0, 1]. Default ``0.98``.
        lamb: Amplification factor :math:`\lambda` of the EMA. Default ``2.0``.
    """

    name = "gradfilterema"
    reference = "pytorch_optimizer.gradfilter_ema"

    def __init__(
        self,
        optimizer: Any,
        alpha: float = 0.98,
        lamb: float = 2.0,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self._hyper("alpha", alpha, 0.0, 1.0)
        self._hyper("lamb", lamb)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["ema"] = self.zeros(parameter)

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        hp = self.hp
        first = hp.step == 1

        def leaf(g: mx.array, slot: dict) -> mx.array:
            g32 = g.astype(slot["ema"].dtype)
            mu = mx.where(first, g32, F.lerp(slot["ema"], g32, hp.one_minus_alpha))
            slot["ema"] = mu
            return (g32 + hp.lamb * mu).astype(g.dtype)

        return self.inner_apply(tree_map(leaf, gradients, self._state["slots"]), params, loss)
