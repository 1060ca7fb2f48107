"""The Keras 3 optimizer base-class options (clipping, EMA, loss scaling, gradient accumulation) as a wrapper."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map

from mlx_optim import functional as F
from mlx_optim.base import _match, check_range
from mlx_optim.functional import global_norm
from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Wrapper, _assign

__all__ = ["KerasOptions", "clip_by_norm", "clip_by_global_norm"]


def clip_by_norm(g: mx.array, clipnorm: float) -> mx.array:
    """Keras' per-tensor ``_clip_by_norm``: ``g * clipnorm / max(||g||, clipnorm)`` (a zero tensor stays zero)."""
    l2sum = mx.sum(mx.square(g))
    l2norm = mx.where(l2sum > 0, mx.sqrt(mx.where(l2sum > 0, l2sum, 1.0)), l2sum)
    return g * clipnorm / mx.maximum(l2norm, clipnorm)


def clip_by_global_norm(grads: list[mx.array], clip_norm: float) -> list[mx.array]:
    """Keras' ``clip_by_global_norm``: scale by ``min(1, clip_norm / norm)``; NaN for a non-finite norm."""
    norm = global_norm(grads)
    scale = clip_norm * mx.minimum(1.0 / norm, 1.0 / clip_norm) + (norm - norm)
    return [g * scale.astype(g.dtype) for g in grads]


def _int_option(name: str, value: Any, low: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ValueError(f"KerasOptions: {name}={value!r} must be an integer >= {low} or None")


@register
@wrapper_args
class KerasOptions(Wrapper):
    r"""KerasOptions: a wrapper that adds the common Keras 3 optimizer arguments to any optimizer.

    Every Keras 3 optimizer takes ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``,
    ``ema_momentum``, ``ema_overwrite_frequency``, ``loss_scale_factor`` and ``gradient_accumulation_steps``;
    ``mlx.optimizers`` has none of them. This wrapper applies them in Keras 3's order
    (``BaseOptimizer.apply`` / ``_backend_apply_gradients``):

    1. divide the gradients by ``loss_scale_factor`` (multiply the loss by it yourself, or with
       :meth:`scale_loss`);
    2. with ``gradient_accumulation_steps = N``: on calls ``t`` with :math:`t \bmod N \ne 0` add the gradient
       to an accumulator and leave the weights alone; on the others step with :math:`(g + \text{acc}) / N` and
       reset the accumulator;
    3. clip the (averaged) gradient: ``agc_clipping_value`` (adaptive gradient clipping, below) first, then
       ``clipnorm`` per tensor, else ``global_clipnorm`` jointly, else ``clipvalue`` element-wise (at most one of
       these three may be set);
    4. the inner optimizer's update;
    5. ``use_ema``: :math:`\bar w \leftarrow m\bar w + (1 - m) w` with :math:`m = 0` on the first (accumulated)
       iteration and ``ema_momentum`` afterwards; every ``ema_overwrite_frequency`` (accumulated) iterations
       the weights are overwritten by their average. :meth:`finalize_variable_values` copies the averages into
       a model at the end of training, as Keras' ``fit`` does; :meth:`ema_weights` swaps them in for
       evaluation.

    Two options that are not Keras base-class arguments (keyword-only):

    * ``agc_clipping_value``: adaptive gradient clipping (Brock et al., 2021, arXiv:2102.06171) with
      pytorch_optimizer's ``agc``: each gradient is rescaled so that its unit-wise norm is at most
      ``agc_clipping_value`` times ``max(unit-wise norm of the weight, agc_eps)`` (unit-wise: per output row for
      2-D/3-D tensors, whole tensor for vectors).
    * ``skip_nonfinite`` (default: on when ``loss_scale_factor`` is set): if any gradient of the call is
      inf/NaN, the whole call is skipped, as Keras' ``LossScaleOptimizer`` does: weights, EMA, accumulator,
      the inner optimizer's state and the call counter stay as they were (selected with ``mx.where``, so it
      works inside ``mx.compile``). The loss scale itself stays fixed (no dynamic scaling).

    Everything is arithmetic on the call counter with ``mx.where`` (the inner optimizer's state is kept
    unchanged on accumulation calls), so the wrapper runs inside ``mx.compile`` with one update per call.

    Paper: none; these are the options of Keras 3's ``keras.optimizers.Optimizer``.

    Reference: a torch transcription of Keras 3's ``BaseOptimizer`` around the same torch optimizer
    (parity-checked). Deviations from Keras: the inner optimizer's learning-rate schedule sees the inner
    optimizer's own step (the number of actual updates), not every call; weight decay is the inner
    optimizer's; the EMA and the accumulator are float32 for low-precision parameters. ``weight_decay`` and
    ``name`` are not options here.

    Args:
        clipnorm: Largest norm of each gradient tensor (>= 0); ``None`` disables. Default ``None``.
        clipvalue: Largest absolute value of each gradient entry (>= 0); ``None`` disables. Default ``None``.
        global_clipnorm: Largest norm of all gradients together (>= 0); ``None`` disables. Default ``None``.
        use_ema: Keep an exponential moving average of the weights. Default ``False``.
        ema_momentum: Decay rate of the weight EMA, in [0, 1]. Default ``0.99``.
        ema_overwrite_frequency: Every this many (accumulated) iterations, overwrite the weights by their
            average (an integer >= 1); ``None`` never does. Default ``None``.
        loss_scale_factor: Factor (> 0) the gradients are divided by (the loss having been multiplied by it);
            ``None`` disables. Default ``None``.
        gradient_accumulation_steps: Number of calls whose gradients are averaged into one update (an integer
            >= 2); ``None`` updates every call. Default ``None``.
        agc_clipping_value: Adaptive gradient clipping ratio (> 0, keyword-only); ``None`` disables.
            Default ``None``.
        agc_eps: Lower bound of the weight norm in adaptive gradient clipping (>= 0, keyword-only).
            Default ``1e-3``.
        skip_nonfinite: Skip a call whose gradients are not all finite (keyword-only); ``None``: on exactly
            when ``loss_scale_factor`` is set. Default ``None``.
        state_dtype: dtype of the accumulator and the weight average (keyword-only); ``None``: float32 for
            bfloat16/float16 parameters, the parameter's dtype otherwise. The inner optimizer's state follows its
            own ``state_dtype``. Default ``None``.
    """

    name = "kerasoptions"
    reference = "keras.optimizers.Optimizer base options (torch transcription)"

    def __init__(
        self,
        optimizer: Any,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        *,
        agc_clipping_value: float | None = None,
        agc_eps: float = 1e-3,
        skip_nonfinite: bool | None = None,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        owner = type(self).__name__
        if gradient_accumulation_steps:
            _int_option("gradient_accumulation_steps", gradient_accumulation_steps, 2)
        if use_ema:
            check_range(owner, "ema_momentum", ema_momentum, 0.0, 1.0)
            if ema_overwrite_frequency:
                _int_option("ema_overwrite_frequency", ema_overwrite_frequency, 1)
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can be set; got "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        for name, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if value is not None:
                check_range(owner, name, value, 0.0)
        if loss_scale_factor is not None:
            check_range(owner, "loss_scale_factor", loss_scale_factor, 0.0, None, "()")
        if agc_clipping_value is not None:
            check_range(owner, "agc_clipping_value", agc_clipping_value, 0.0, None, "()")
            check_range(owner, "agc_eps", agc_eps, 0.0)
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_overwrite_frequency = use_ema, ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps or None
        self._hyper("ema_momentum", ema_momentum, 0.0, 1.0)
        self.agc_clipping_value, self.agc_eps = agc_clipping_value, agc_eps
        self.skip_nonfinite = loss_scale_factor is not None if skip_nonfinite is None else bool(skip_nonfinite)

    def _cdt(self, p: mx.array) -> mx.Dtype:
        return self.state_dtype or self.compute_dtype(p)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.gradient_accumulation_steps:
            state["accumulator"] = mx.zeros(parameter.shape, self._cdt(parameter))
        if self.use_ema:
            state["average"] = mx.zeros(parameter.shape, self._cdt(parameter))

    def scale_loss(self, loss: mx.array) -> mx.array:
        """Keras' ``scale_loss``: the loss times ``loss_scale_factor`` (if set)."""
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    def finalize_variable_values(self, model) -> None:
        """With ``use_ema``, load the moving averages into ``model`` (Keras calls this at the end of ``fit``)."""
        if self.use_ema:
            params = model.trainable_parameters()
            model.update(tree_map(lambda p, s: s["average"].astype(p.dtype), params, self._state["slots"]))

    @contextlib.contextmanager
    def ema_weights(self, model) -> Iterator[Any]:
        """Evaluate with the moving averages, then swap the trained weights back::

        with opt.ema_weights(model):
            val_loss = evaluate(model)
        """
        if not self.use_ema:
            raise ValueError("KerasOptions.ema_weights needs use_ema=True")
        trained = model.trainable_parameters()
        self.finalize_variable_values(model)
        try:
            yield model
        finally:
            model.update(trained)

    def _clip(self, grads: Any, params: Any = None) -> Any:
        if self.agc_clipping_value is not None:
            grads = tree_map(
                lambda g, p: F.agc(p.astype(g.dtype), g, self.agc_eps, self.agc_clipping_value), grads, params
            )
        if self.clipnorm:
            return tree_map(lambda g: clip_by_norm(g, self.clipnorm), grads)
        if self.global_clipnorm:
            flat = tree_flatten(grads)
            clipped = clip_by_global_norm([g for _, g in flat], self.global_clipnorm)
            out = tree_map(lambda g: g, grads)
            _assign(out, [(k, g) for (k, _), g in zip(flat, clipped)])
            return out
        if self.clipvalue:
            return tree_map(lambda g: mx.clip(g, -self.clipvalue, self.clipvalue), grads)
        return grads

    def apply_gradients(self, gradients: Any, parameters: Any, loss: mx.array | None = None) -> Any:
        if not self.skip_nonfinite:
            return super().apply_gradients(gradients, parameters, loss)
        params = _match(gradients, parameters)
        if not self._initialized:
            self.init(params)
        before = dict(tree_flatten(self._state))
        new = super().apply_gradients(gradients, params, loss)
        finite = mx.array(True)
        for _, g in tree_flatten(gradients):
            finite = finite & mx.all(mx.isfinite(g))
        _assign(self._state, [(k, mx.where(finite, v, before[k])) for k, v in tree_flatten(self._state) if k in before])
        return tree_map(lambda q, p: mx.where(finite, q, p), new, params)

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        hp, slots = self.hp, self._state["slots"]
        iterations = hp.step - 1  # Keras' _iterations before this call
        grads = tree_map(lambda g, p: g.astype(self._cdt(p)), gradients, params)
        if self.loss_scale_factor is not None:
            grads = tree_map(lambda g: g / self.loss_scale_factor, grads)
        n = self.gradient_accumulation_steps
        if n:
            update_now = mx.remainder(iterations + 1, n) == 0
            averaged = tree_map(lambda g, s: (g + s["accumulator"]) / n, grads, slots)
            before = tree_flatten(self.inner.state)
            stepped = self.inner_apply(self._clip(averaged, params), params, loss)
            after = tree_flatten(self.inner.state)
            _assign(self.inner.state, [(k, mx.where(update_now, a, b)) for (k, a), (_, b) in zip(after, before)])
            new = tree_map(lambda q, p: mx.where(update_now, q, p), stepped, params)

            def accumulate(g: mx.array, s: dict) -> None:
                s["accumulator"] = mx.where(update_now, mx.zeros_like(g), g + s["accumulator"])

            tree_map(accumulate, grads, slots)
            ema_iterations = mx.floor(iterations / n)
        else:
            new = self.inner_apply(self._clip(grads, params), params, loss)
            ema_iterations = iterations
        if not self.use_ema:
            return new
        momentum = (ema_iterations != 0).astype(mx.float32) * hp.ema_momentum
        if self.ema_overwrite_frequency:
            overwrite = mx.remainder(ema_iterations + 1, self.ema_overwrite_frequency) == 0
        else:
            overwrite = mx.array(False)

        def ema(p: mx.array, s: dict) -> mx.array:
            avg = momentum * s["average"] + (1 - momentum) * p.astype(s["average"].dtype)
            s["average"] = avg
            return mx.where(overwrite, avg.astype(p.dtype), p)

        return tree_map(ema, new, slots)
