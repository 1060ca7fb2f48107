"""Schedule-free optimizers (Defazio et al., 2024): ScheduleFreeSGD, ScheduleFreeAdamW, ScheduleFreeRAdam.

Schedule-free methods keep two sequences: the fast iterate :math:`z` (in the
optimizer state) and the averaged iterate :math:`x`. The model holds the
*training* point :math:`y = (1-\\beta) z + \\beta x`, at which gradients are
taken. For evaluation (and for saving the weights to deploy) the model must
hold :math:`x` instead, so these optimizers have two extra methods mirroring
pytorch_optimizer's ``optimizer.eval()`` / ``optimizer.train()``::

    opt = mlx_optim.ScheduleFreeAdamW(learning_rate=2.5e-3)
    for batch in data:
        opt.step_with(model, loss_and_grad_fn, *batch)   # model holds y
    opt.eval(model)      # model now holds the averaged weights x
    evaluate(model)
    opt.train(model)     # back to y before training again

Both accept an ``nn.Module`` (updated in place and returned) or a parameter tree
(a new tree is returned). Called without an argument, as in PyTorch (``opt.eval()``),
they switch the model the optimizer last stepped through ``opt.update(model, ...)``
or ``opt.step_with(model, ...)``; an optimizer driven only by ``apply_gradients``
has no model to switch and says so. The mode is ``state["train_mode"]`` (1.0 train, 0.0
eval), saved with the state; calling ``eval`` twice (or ``train`` in train mode)
does nothing, as in the reference. The swap only touches parameters that have
optimizer state (``z``); before the first step it only flips the mode.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, state_copy
from mlx_optim.docargs import fill_args
from mlx_optim.registry import register


def schedule_free_step(p, g, z, *, lr, checkpoint, g_coef):
    """One schedule-free step at the training point ``p`` (= y). Returns ``(y_new, z_new)``.

    The reference's ``y <- lerp(y, z, c) + lr (beta (1 - c) - 1) g`` then ``z <- z - lr g`` (``c`` is the
    averaging weight ``checkpoint``), computed as ``z <- z - lr g`` then ``y <- lerp(y, z_new, c) + k g`` with
    ``g_coef`` ``k = lr (beta - 1)(1 - c)`` (:func:`schedule_free_scalars`): equal up to rounding, and ``y`` reading
    ``z_new`` lets ``mx.compile`` update both in one kernel (mlx_optim.fusion).
    """
    z = z - lr * g
    return F.lerp(p, z, checkpoint) + g_coef * g, z


def schedule_free_scalars(hp, beta) -> None:
    """Set ``hp.g_coef = lr (beta - 1)(1 - c)`` from ``hp.sf_lr`` and ``hp.checkpoint`` (:func:`schedule_free_step`)."""
    hp.g_coef = hp.sf_lr * ((beta - 1) * (1 - hp.checkpoint))


def averaging_checkpoint(state: dict, lr, step, r, weight_lr_power) -> mx.array:
    """Update ``state["lr_max"]`` / ``state["weight_sum"]`` and return the averaging weight.

    ``w_t = t^r * max_{i<=t}(lr_i)^{weight_lr_power}``, ``c_t = w_t / sum_{i<=t} w_i`` (0 while the sum is 0).
    """
    lr_max = mx.maximum(lr, state["lr_max"])
    weight = mx.power(step, r) * mx.power(lr_max, weight_lr_power)
    weight_sum = state["weight_sum"] + weight
    state["lr_max"], state["weight_sum"] = lr_max, weight_sum
    safe = mx.where(weight_sum != 0, weight_sum, 1.0)
    return mx.where(weight_sum != 0, weight / safe, 0.0)


def _swap_tree(params: Any, state: Any, fn) -> Any:
    """Apply ``fn(p, leaf_state)`` to every parameter that has optimizer state; returns the same structure
    restricted to those parameters (``None`` when none has state)."""
    if isinstance(params, mx.array):
        return fn(params, state) if isinstance(state, dict) and "z" in state else None
    if isinstance(params, dict):
        if not isinstance(state, dict):
            return None
        out = {k: _swap_tree(v, state[k], fn) for k, v in params.items() if k in state}
        out = {k: v for k, v in out.items() if v is not None}
        return out or None
    if isinstance(params, (list, tuple)):
        if not isinstance(state, (list, tuple)):
            return None
        out = [_swap_tree(v, s, fn) for v, s in zip(params, state)]
        if all(v is None for v in out):
            return None
        # Keep the untouched entries so list positions stay aligned.
        return type(params)(
            o if o is not None else ({} if not isinstance(v, mx.array) else v) for o, v in zip(out, params)
        )
    return None


_SF_ARGS: dict[str, str] = {
    "learning_rate": r"Step size :math:`\eta`, a float or a schedule (a callable of the step).",
    "betas": "``(beta1, beta2)``: interpolation coefficient of the training point, in (0, 1), and decay rate of the "
    "second moment, in [0, 1).",
    "weight_decay": r"L2 coefficient :math:`\lambda` added to the normalized gradient (>= 0).",
    "r": r"Exponent :math:`r` of the polynomial step weighting :math:`t^r` in the averaging.",
    "weight_lr_power": r"Exponent :math:`p` of the largest learning rate so far in the averaging weight "
    "(0 disables it).",
    "warmup_steps": "Number of steps of linear learning-rate warm-up (>= 0).",
    "eps": "Term added to the denominator (>= 0).",
    "maximize": "Maximize the objective instead of minimizing it (the gradient is negated).",
    "state_dtype": "dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16 parameters, the "
    "parameter's dtype otherwise; a bfloat16 state is written back with stochastic rounding.",
}
"""``Args:`` text the schedule-free optimizers share (:func:`mlx_optim.docargs.fill_args`)."""
_sf_args = fill_args(_SF_ARGS)


class _ScheduleFree(Optimizer):
    """Shared parts: averaging state, train/eval swap. Subclasses set ``_interp_name``."""

    _interp_name = "beta1"  # the tunable holding the interpolation coefficient beta
    shared_tunables = ("beta1", "momentum")  # the interpolation coefficient: train() / eval() swap with one value
    shared_tunables_reason = "train() and eval() interpolate every parameter with one value of it"

    def _averaging_hypers(self, weight_decay: Tunable, r: Tunable, weight_lr_power: Tunable, betas=None) -> None:
        """Validate the keywords the schedule-free optimizers share: ``betas`` when given (``beta1`` in (0, 1)),
        ``weight_decay``, and the averaging weight's ``r`` and ``weight_lr_power``."""
        if betas is not None:
            self._betas(betas, 2)
            self._check("beta1", betas[0], 0.0, 1.0, "()")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("r", r)
        self._hyper("weight_lr_power", weight_lr_power)

    def normalize(self, g: mx.array, state: dict) -> mx.array:
        """The gradient the schedule-free step takes: SGD's as it is, AdamW's / RAdam's divided by their second
        moment (which this updates)."""
        return g

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, self.normalize(g, state), decouple=False)
        p, state["z"] = schedule_free_step(p, g, state["z"], lr=hp.sf_lr, checkpoint=hp.checkpoint, g_coef=hp.g_coef)
        return p

    def _init_schedule_free(self) -> None:
        self.globals["train_mode"] = mx.array(1.0, mx.float32)
        self.globals["weight_sum"] = mx.array(0.0, mx.float32)
        self.globals["lr_max"] = mx.array(-1.0, mx.float32)

    def _swap(self, target: Any, to_train: bool) -> Any:
        mode = self.globals["train_mode"]
        beta = self.globals[self._interp_name]
        weight = (1 - beta) if to_train else (1 - 1 / beta)
        active = (mode == 0) if to_train else (mode == 1)
        self.globals["train_mode"] = mx.array(1.0 if to_train else 0.0, mx.float32)
        if not self._initialized:
            return target

        def fn(p, s):
            dtype = self.compute_dtype(p)
            x = p.astype(dtype)
            new = mx.where(active, F.lerp(x, s["z"].astype(dtype), weight), x)
            return new.astype(p.dtype)

        if isinstance(target, nn.Module):
            new = _swap_tree(target.parameters(), self.state, fn)
            if new is not None:
                target.update(new)
            return target
        new = _swap_tree(target, self.state, fn)
        if new is None:
            return target
        return _merge(target, new)

    def update(self, model: nn.Module, gradients: dict, loss: mx.array | None = None) -> None:
        self._model_ref = weakref.ref(model)  # what eval() / train() without an argument switch
        super().update(model, gradients, loss=loss)

    def step_with(self, model: nn.Module, loss_and_grad_fn: Callable, *args: Any, **kwargs: Any) -> mx.array:
        self._model_ref = weakref.ref(model)
        return super().step_with(model, loss_and_grad_fn, *args, **kwargs)

    def _target(self, target: Any, method: str) -> Any:
        if target is not None:
            return target
        model = self.__dict__.get("_model_ref", lambda: None)()
        if model is None:
            raise ValueError(
                f"{type(self).__name__}.{method}() without an argument switches the model this optimizer stepped "
                f"with opt.update(model, ...) or opt.step_with(model, ...), and it has not stepped one: MLX "
                f"optimizers hold no reference to the parameters, so pass them: opt.{method}(model) (an nn.Module, "
                f"switched in place) or params = opt.{method}(params) (a parameter tree)"
            )
        return model

    def eval(self, target: Any = None) -> Any:
        """Switch ``target`` (an ``nn.Module`` or a parameter tree) to the averaged weights ``x``.

        ``p <- lerp(p, z, 1 - 1/beta)``; a no-op in eval mode. Returns the module / the new tree. Without
        ``target`` (PyTorch's ``optimizer.eval()``): the model last passed to ``update`` / ``step_with``.

        Args:
            target: the ``nn.Module`` (switched in place) or parameter tree (a new tree is returned); ``None``
                for the model this optimizer last stepped (``ValueError`` if there is none).
        """
        return self._swap(self._target(target, "eval"), to_train=False)

    def train(self, target: Any = None) -> Any:
        """Switch ``target`` back to the training point ``y``: ``p <- lerp(p, z, 1 - beta)``; a no-op in train mode.

        Args:
            target: as for :meth:`eval`; ``None`` for the model this optimizer last stepped.
        """
        return self._swap(self._target(target, "train"), to_train=True)


def _merge(base: Any, new: Any) -> Any:
    """``base`` with the leaves present in ``new`` replaced."""
    if isinstance(base, dict):
        return {k: (_merge(v, new[k]) if k in new else v) for k, v in base.items()}
    if isinstance(base, (list, tuple)):
        return type(base)(_merge(b, n) for b, n in zip(base, new))
    return new if isinstance(new, mx.array) else base


@register
@_sf_args
class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-free SGD: momentum by interpolation and iterate averaging instead of a learning-rate schedule.

    With :math:`c_t = w_t / \sum_{i \le t} w_i`, :math:`w_t = t^r \, \eta_{\max,t}^{\,p}` (``weight_lr_power``
    :math:`p`) and linear warmup of :math:`\eta_t` over ``warmup_steps``:

    .. math::
        g_t \leftarrow g_t + \lambda y_t \\
        y_{t+1} = (1-c_t) y_t + c_t z_t + \eta_t (\beta (1 - c_t) - 1) g_t,\quad
        z_{t+1} = z_t - \eta_t g_t

    The model holds the training point :math:`y`. Call ``opt.eval(model)`` before evaluating (it moves
    the parameters to the averaged :math:`x`, ``p <- lerp(p, z, 1 - 1/beta)``) and ``opt.train(model)`` before
    training again (``p <- lerp(p, z, 1 - beta)``); both accept a module or a parameter tree (returning the
    new tree) and are no-ops in the mode already set.

    Paper: Defazio et al., "The Road Less Scheduled", NeurIPS 2024, arXiv:2405.15682.

    Reference: ``pytorch_optimizer.ScheduleFreeSGD`` (parity-checked).

    Args:
        momentum: Interpolation coefficient :math:`\beta` of the training point, in (0, 1). Default ``0.9``.
        weight_decay: L2 coefficient :math:`\lambda` added to the gradient at :math:`y` (>= 0).
            Default ``0.0``.
        eps: Accepted and validated (>= 0) like the reference, which does not use it. Default ``1e-8``.
    """

    name = "schedulefreesgd"
    family = "sgd"
    reference = "pytorch_optimizer.ScheduleFreeSGD"
    _interp_name = "momentum"

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        r: Tunable = 0.0,
        weight_lr_power: Tunable = 2.0,
        warmup_steps: int = 0,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "()")
        self._averaging_hypers(weight_decay, r, weight_lr_power)
        self._check("warmup_steps", warmup_steps, 0)
        self._hyper("eps", eps, 0.0)
        self.warmup_steps = int(warmup_steps)
        self._init_schedule_free()

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["z"] = state_copy(self, parameter)

    def warmup_lr(self, hp) -> mx.array:
        if self.warmup_steps <= 0:
            return hp.lr
        return hp.lr * mx.where(hp.step < self.warmup_steps, hp.step / self.warmup_steps, 1.0)

    def step_scalars(self, hp) -> None:
        hp.sf_lr = self.warmup_lr(hp)
        hp.checkpoint = averaging_checkpoint(self.globals, hp.sf_lr, hp.step, hp.r, hp.weight_lr_power)
        schedule_free_scalars(hp, hp.momentum)


@register
@_sf_args
class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-free AdamW: the schedule-free step on gradients normalized by Adam's second moment.

    The gradient is normalized by the bias-corrected second moment, then the schedule-free SGD step is taken
    with :math:`\beta = \beta_1`:

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        \hat g_t = \frac{g_t}{\sqrt{v_t / (1-\beta_2^t) + 10^{-15}} + \epsilon} + \lambda y_t \\
        y_{t+1} = (1-c_t) y_t + c_t z_t + \eta_t (\beta_1 (1 - c_t) - 1) \hat g_t,\quad
        z_{t+1} = z_t - \eta_t \hat g_t

    with the averaging weight :math:`c_t` of :class:`ScheduleFreeSGD`. ``ams_bound`` uses the running maximum
    of the corrected :math:`v_t`; ``decoupling_c > 0`` replaces :math:`c_t` by
    :math:`\min(1, c_t (1-\beta_1) C)`. Weight decay is the reference's L2 term added to the *normalized*
    gradient.

    The model holds the training point :math:`y`. Call ``opt.eval(model)`` before evaluating (it moves
    the parameters to the averaged :math:`x`, ``p <- lerp(p, z, 1 - 1/beta)``) and ``opt.train(model)`` before
    training again (``p <- lerp(p, z, 1 - beta)``); both accept a module or a parameter tree (returning the
    new tree) and are no-ops in the mode already set.

    Paper: Defazio et al., "The Road Less Scheduled", NeurIPS 2024, arXiv:2405.15682.

    Reference: ``pytorch_optimizer.ScheduleFreeAdamW`` (parity-checked).

    Args:
        decoupling_c: Coefficient :math:`C` of the decoupled averaging weight (>= 0; 0 uses :math:`c_t`).
            Default ``0.0``.
        ams_bound: Divide by the running maximum of the corrected second moment. Default ``False``.
    """

    name = "schedulefreeadamw"
    family = "adam"
    reference = "pytorch_optimizer.ScheduleFreeAdamW"

    def __init__(
        self,
        learning_rate: Tunable = 2.5e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        r: Tunable = 0.0,
        weight_lr_power: Tunable = 2.0,
        warmup_steps: int = 0,
        decoupling_c: Tunable = 0.0,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._averaging_hypers(weight_decay, r, weight_lr_power, betas)
        self._check("warmup_steps", warmup_steps, 0)
        self._hyper("decoupling_c", decoupling_c, 0.0)
        self._hyper("eps", eps, 0.0)
        self.warmup_steps = int(warmup_steps)
        self.ams_bound = ams_bound
        self._init_schedule_free()

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["z"] = state_copy(self, parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    warmup_lr = ScheduleFreeSGD.warmup_lr

    def step_scalars(self, hp) -> None:
        hp.sf_lr = self.warmup_lr(hp)
        c = averaging_checkpoint(self.globals, hp.sf_lr, hp.step, hp.r, hp.weight_lr_power)
        coupled = mx.minimum(1.0, c * hp.one_minus_beta1 * hp.decoupling_c)
        hp.checkpoint = mx.where(hp.decoupling_c > 0, coupled, c)
        schedule_free_scalars(hp, hp.beta1)
        hp.bc2 = hp.bias_correction("beta2")

    def normalize(self, g: mx.array, state: dict) -> mx.array:
        hp = self.hp
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg_sq"] = v
        v_hat = v / hp.bc2
        if self.ams_bound:
            v_hat = self.apply_amsgrad(state, v_hat)
        return g / F.ams_bound_denom(v_hat, hp.eps)


@register
@_sf_args
class ScheduleFreeRAdam(_ScheduleFree):
    r"""Schedule-free RAdam: the schedule-free step with RAdam's rectified step size.

    The step size is RAdam's rectified one, :math:`\eta_t = \eta\, r_t / \sqrt{1-\beta_2^t}` once the SMA
    length :math:`\rho_t > 4`; before that the update is plain SGD on the gradient with :math:`\eta_t = 0`
    (``silent_sgd_phase=True``, only the averaging state moves) or, reference quirk kept, :math:`\eta_t = 1`
    regardless of ``learning_rate`` (``silent_sgd_phase=False``). Then

    .. math::
        \hat g_t = \frac{g_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon} + \lambda y_t \ (\rho_t > 4),\quad
        y_{t+1} = (1-c_t) y_t + c_t z_t + \eta_t (\beta_1 (1 - c_t) - 1) \hat g_t,\quad
        z_{t+1} = z_t - \eta_t \hat g_t

    with the averaging weight :math:`c_t` of :class:`ScheduleFreeSGD` (no warmup).

    The model holds the training point :math:`y`. Call ``opt.eval(model)`` before evaluating (it moves
    the parameters to the averaged :math:`x`, ``p <- lerp(p, z, 1 - 1/beta)``) and ``opt.train(model)`` before
    training again (``p <- lerp(p, z, 1 - beta)``); both accept a module or a parameter tree (returning the
    new tree) and are no-ops in the mode already set.

    Paper: Defazio et al., "The Road Less Scheduled", NeurIPS 2024, arXiv:2405.15682; RAdam is Liu et al.,
    ICLR 2020, arXiv:1908.03265.

    Reference: ``pytorch_optimizer.ScheduleFreeRAdam`` (parity-checked).

    Args:
        silent_sgd_phase: Before rectification, take no steps (only the averaging state moves) instead of
            SGD steps of size 1. Default ``True``.
    """

    name = "schedulefreeradam"
    family = "adam"
    reference = "pytorch_optimizer.ScheduleFreeRAdam"

    def __init__(
        self,
        learning_rate: Tunable = 2.5e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        r: Tunable = 0.0,
        weight_lr_power: Tunable = 2.0,
        silent_sgd_phase: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._averaging_hypers(weight_decay, r, weight_lr_power, betas)
        self._hyper("eps", eps, 0.0)
        self.silent_sgd_phase = silent_sgd_phase
        self._init_schedule_free()

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["z"] = state_copy(self, parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        rt, n_sma = F.rectification(hp.beta2, hp.step, 4, hp.one_minus_beta2)
        step_size = hp.lr * mx.where(n_sma >= 4, rt, -1.0)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.adaptive = n_sma > 4
        lr = mx.where(hp.adaptive, step_size / hp.bc2_sqrt, step_size)
        hp.sf_lr = mx.where(step_size < 0, 0.0 if self.silent_sgd_phase else 1.0, lr)
        hp.checkpoint = averaging_checkpoint(self.globals, hp.sf_lr, hp.step, hp.r, hp.weight_lr_power)
        schedule_free_scalars(hp, hp.beta1)

    def normalize(self, g: mx.array, state: dict) -> mx.array:
        hp = self.hp
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg_sq"] = v
        return mx.where(hp.adaptive, g / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps), g)
