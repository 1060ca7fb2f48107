"""AdaHessian (Yao et al., 2021): Adam with a Hutchinson estimate of the Hessian diagonal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from mlx_optim import functional as F
from mlx_optim.autodiff import LossAndGrad
from mlx_optim.base import Optimizer, Tunable, _match
from mlx_optim.registry import register

DISTRIBUTIONS = ("gaussian", "rademacher")


ESTIMATE = "hessian_estimate"  # transient per-leaf state entry: this step's curvature estimate


def hutchinson_probes(params: Any, key: mx.array, distribution: str) -> Any:
    """One probe per parameter leaf: ``±1`` (Rademacher) or ``N(0, 1)`` (Gaussian), in its dtype."""
    flat = tree_flatten(params)
    keys = mx.random.split(key, max(len(flat), 1))
    probes = []
    for (name, p), k in zip(flat, keys):
        if distribution == "rademacher":
            z = 2 * mx.random.bernoulli(0.5, p.shape, key=k).astype(p.dtype) - 1
        else:
            z = mx.random.normal(p.shape, dtype=p.dtype, key=k)
        probes.append((name, z))
    return tree_unflatten(probes)


def hutchinson_diagonal(
    loss_and_grad: LossAndGrad,
    model: nn.Module,
    key: mx.array,
    num_samples: int,
    distribution: str,
    *args: Any,
    **kwargs: Any,
) -> tuple[mx.array, Any, Any]:
    """``(loss, grads, d)`` with Hutchinson's estimate ``d = (1/n) sum_i z_i * (H z_i)`` of diag(H).

    ``E[z z^T] = I`` for both distributions, so ``E[d] = diag(H)``. The loss and
    gradient are those of the first probe's pass.
    """
    keys = mx.random.split(key, num_samples)
    loss = grads = est = None
    for i in range(num_samples):
        probes = hutchinson_probes(model.trainable_parameters(), keys[i], distribution)
        loss_i, grads_i, hz = loss_and_grad.hvp(model, probes, *args, **kwargs)
        if i == 0:
            loss, grads = loss_i, grads_i
        flat_z, flat_hz = tree_flatten(probes), tree_flatten(hz)
        part = [(k, (h * z).astype(mx.float32) * (1.0 / num_samples)) for (k, z), (_, h) in zip(flat_z, flat_hz)]
        if est is None:
            est = part
        else:
            est = [(k, a + b) for (k, a), (_, b) in zip(est, part)]
    return loss, grads, tree_unflatten(est)


def _require_loss_and_grad(owner: str, fn: Callable, wrap: str) -> LossAndGrad:
    if not isinstance(fn, LossAndGrad):
        raise TypeError(
            f"{owner}.step_with needs the loss function itself to form its curvature estimate: pass "
            f"{wrap} instead of {getattr(fn, '__name__', type(fn).__name__)}"
        )
    return fn


def _check_hessian(hessian: Any, gradients: Any) -> None:
    got = {k: v for k, v in tree_flatten(hessian)}
    for k, g in tree_flatten(gradients):
        if k not in got:
            raise ValueError(f"hessian has no entry for the gradient at '{k}'")
        if not isinstance(got[k], mx.array) or got[k].shape != g.shape:
            shape = getattr(got[k], "shape", None)
            raise ValueError(f"hessian at '{k}' has shape {shape}, the gradient {tuple(g.shape)}")


def _attach(state: Any, hessian: Any) -> None:
    """Put each leaf's estimate in its state dict under ``ESTIMATE`` (popped by ``take_hessian``)."""
    if isinstance(hessian, dict):
        for k, h in hessian.items():
            _attach(state[k], h)
    elif isinstance(hessian, (list, tuple)):
        for s, h in zip(state, hessian):
            _attach(s, h)
    else:
        state[ESTIMATE] = hessian


def _detach(state: Any) -> None:
    if isinstance(state, dict):
        state.pop(ESTIMATE, None)
        for v in state.values():
            if isinstance(v, (dict, list, tuple)):
                _detach(v)
    elif isinstance(state, (list, tuple)):
        for v in state:
            _detach(v)


class _CurvatureOptimizer(Optimizer):
    """Calling convention shared by the optimizers that take a diagonal curvature estimate.

    Subclasses implement :meth:`estimate` (``(loss, grads, hessian)`` for a
    ``step_with`` call) and read the current leaf's estimate with
    :meth:`take_hessian`, which returns ``None`` when this step has none (then
    the curvature moment is left alone) and otherwise an estimate to be used
    where ``self.hp.refresh`` is true.
    """

    wrap_hint = "mlx_optim.value_and_grad(model, loss_fn)"

    def __init__(self, learning_rate, *, update_period: int, seed: int, maximize: bool, state_dtype):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._check("update_period", update_period, 1)
        self.update_period = int(update_period)
        self.globals["key"] = mx.random.key(int(seed))
        self._refresh_mode = "none"
        # Python-level (compile-safe): whether curvature was ever given, by step_with, hessian= or a loaded state
        self._curvature_seen = False

    @property
    def state(self) -> dict:
        return self._state

    @state.setter
    def state(self, state: dict) -> None:  # a loaded state carries the curvature it was saved with
        Optimizer.state.fset(self, state)
        self._curvature_seen = True

    # the estimate for step_with
    def estimate(self, lg: LossAndGrad, model: nn.Module, key: mx.array, *args, **kwargs):
        raise NotImplementedError

    def step_with(self, model: nn.Module, loss_and_grad_fn: Callable, *args: Any, **kwargs: Any) -> mx.array:
        """One step: loss, gradient and a fresh curvature estimate (used on refresh steps)."""
        lg = _require_loss_and_grad(type(self).__name__, loss_and_grad_fn, self.wrap_hint)
        keys = mx.random.split(self.globals["key"])
        self.globals["key"] = keys[0]
        loss, grads, hessian = self.estimate(lg, model, keys[1], *args, **kwargs)
        model.update(self._apply(grads, model, loss, hessian, "period"))
        return loss

    def update(self, model: nn.Module, gradients: dict, loss: mx.array | None = None, hessian: Any = None) -> None:
        """Apply ``gradients``; with ``hessian`` (a tree like ``gradients``) also refresh the curvature moment."""
        model.update(self.apply_gradients(gradients, model, loss=loss, hessian=hessian))

    def apply_gradients(
        self, gradients: dict, parameters: dict, loss: mx.array | None = None, hessian: Any = None
    ) -> dict:
        """Apply ``gradients``; ``hessian`` (a tree like ``gradients``) refreshes the curvature moment.

        Raises ``ValueError`` when no curvature was ever given (see the module docstring).
        """
        if hessian is None and not self._curvature_seen:
            name = type(self).__name__
            raise ValueError(
                f"{name} cannot step on gradients alone before it has a curvature estimate (its curvature moment "
                f"is still zero): call opt.step_with(model, {self.wrap_hint}, *batch), which estimates it, or pass "
                f"one: opt.update(model, grads, hessian=h); afterwards gradient-only updates step between refreshes"
            )
        return self._apply(gradients, parameters, loss, hessian, "given" if hessian is not None else "none")

    def _apply(self, gradients, parameters, loss, hessian, mode: str) -> dict:
        if hessian is not None:
            _check_hessian(hessian, gradients)
            if not self._initialized:
                self.init(_match(gradients, parameters))
            _attach(self.state, hessian)
        self._refresh_mode = mode
        if mode != "none":
            self._curvature_seen = True
        try:
            return super().apply_gradients(gradients, parameters, loss=loss)
        finally:
            self._refresh_mode = "none"
            if hessian is not None:
                _detach(self.state)

    def step_scalars(self, hp) -> None:
        if self._refresh_mode == "period":
            hp.refresh = F.every(hp.step - 1, self.update_period)
        else:
            hp.refresh = mx.array(self._refresh_mode == "given")

    def take_hessian(self, state: dict, dtype: mx.Dtype) -> mx.array | None:
        h = state.pop(ESTIMATE, None)
        return None if h is None else h.astype(dtype)


class _Hutchinson(_CurvatureOptimizer):
    def __init__(self, learning_rate, *, update_period, num_samples, hessian_distribution, seed, maximize, state_dtype):
        super().__init__(
            learning_rate, update_period=update_period, seed=seed, maximize=maximize, state_dtype=state_dtype
        )
        self._check("num_samples", num_samples, 1)
        self._choice("hessian_distribution", hessian_distribution, DISTRIBUTIONS)
        self.num_samples = int(num_samples)
        self.hessian_distribution = hessian_distribution

    def estimate(self, lg, model, key, *args, **kwargs):
        return hutchinson_diagonal(lg, model, key, self.num_samples, self.hessian_distribution, *args, **kwargs)


def adahessian_update(m, v, *, step_size, bias_correction2, hessian_power, eps):
    """``step_size * m / ((v / bc2) ** (k / 2) + eps)``: the AdaHessian step."""
    return step_size * m / (mx.power(v / bias_correction2, hessian_power / 2) + eps)


@register
class AdaHessian(_Hutchinson):
    r"""AdaHessian: Adam with the squared Hessian diagonal (Hutchinson's estimate) in place of the squared gradient.

    .. math::
        D_t = \frac{1}{n}\sum_i z_i \odot (H_t z_i) \ \text{(on refresh steps)},\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) D_t^2 \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\,
              \frac{m_t}{(v_t / (1-\beta_2^t))^{k/2} + \epsilon}

    with hessian power :math:`k` and :math:`n` probes :math:`z_i` (Rademacher or Gaussian); ``adam_debias``
    drops the :math:`1-\beta_1^t` factor. Weight decay is decoupled by default (``fixed_decay``: without the
    learning rate), else an L2 term in the gradient. On steps that do not refresh (``update_period``)
    :math:`v` is left as it is.

    It needs Hessian-vector products, so call it as
    ``opt.step_with(model, mlx_optim.value_and_grad(model, loss_fn), *batch)`` (the loss function itself, not
    ``nn.value_and_grad``'s result), or pass an estimate of your own: ``opt.update(model, grads, hessian=D)``
    with ``D`` a tree like ``grads`` (then every such step refreshes :math:`v`). The probes' random key is kept
    in ``state["key"]``. As in the reference, the Hessian is that of the loss even with ``maximize``.

    Paper: "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning" (Yao et al.), AAAI 2021.
    Reference: ``pytorch_optimizer.AdaHessian``, same keywords and defaults (the reference's
    ``step(hessian=...)`` is ``update(..., hessian=...)``); its ``adam_debias`` option (``**kwargs``) is a
    keyword-only argument here, and ``seed`` is added.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``0.1``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the gradient mean and of the squared
            Hessian-diagonal estimate. Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        hessian_power: Exponent :math:`k` in (0, 1] of the RMS Hessian diagonal in the denominator. Default
            ``1.0``.
        update_period (int): Refresh the Hessian estimate every this many steps (>= 1). Default ``1``.
        num_samples (int): Number of probes :math:`n` (>= 1) per estimate. Default ``1``.
        hessian_distribution: Distribution of the probes, ``"rademacher"`` or ``"gaussian"``. Default
            ``"rademacher"``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-16``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        seed (int): Seed of the probes' random key. Default ``0``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adahessian"
    family = "second-order"
    reference = "pytorch_optimizer.AdaHessian"

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        hessian_power: Tunable = 1.0,
        update_period: int = 1,
        num_samples: int = 1,
        hessian_distribution: str = "rademacher",
        eps: Tunable = 1e-16,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate,
            update_period=update_period,
            num_samples=num_samples,
            hessian_distribution=hessian_distribution,
            seed=seed,
            maximize=maximize,
            state_dtype=state_dtype,
        )
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._hyper("hessian_power", hessian_power, 0.0, 1.0, "(]")
        self.adam_debias = adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_hessian_diag_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        super().step_scalars(hp)
        hp.bias_correction2 = hp.bias_correction("beta2")
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        d = self.take_hessian(state, g.dtype)
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = state["exp_hessian_diag_sq"]
        if d is not None:
            v = mx.where(hp.refresh, hp.beta2 * v + hp.one_minus_beta2 * d * d, v)
        state["exp_avg"], state["exp_hessian_diag_sq"] = m, v
        return p - adahessian_update(
            m,
            v,
            step_size=hp.step_size,
            bias_correction2=hp.bias_correction2,
            hessian_power=hp.hessian_power,
            eps=hp.eps,
        )
