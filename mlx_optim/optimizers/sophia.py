"""SophiaH and SophiaG: clipped second-order updates with a diagonal curvature estimate."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Tunable
from mlx_optim.docargs import fill_args
from mlx_optim.optimizers.adahessian import _CurvatureOptimizer, _Hutchinson
from mlx_optim.registry import register

_SOPHIA_ARGS: dict[str, str] = {
    "learning_rate": r"Step size :math:`\eta`, a float or a schedule (a callable of the step).",
    "betas": "``(beta1, beta2)``, decay rates of the momentum and of the curvature EMA, each in [0, 1).",
    "weight_decay": "Weight decay coefficient (>= 0).",
    "weight_decouple": "Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding "
    "``weight_decay * p`` to the gradient.",
    "fixed_decay": "With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning rate.",
    "update_period": "Steps between curvature refreshes (>= 1).",
    "maximize": "Maximize the objective instead of minimizing it (the gradient is negated).",
    "state_dtype": "dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16 parameters, the "
    "parameter's dtype otherwise; a bfloat16 state is written back with stochastic rounding.",
}
"""``Args:`` text SophiaH and SophiaG share (:func:`mlx_optim.docargs.fill_args`)."""
_sophia_args = fill_args(_SOPHIA_ARGS)


@register
@_sophia_args
class SophiaH(_Hutchinson):
    r"""SophiaH: Sophia with Hutchinson's estimate of the Hessian diagonal, a clipped second-order update.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        h_t = \beta_2 h_{t-1} + (1-\beta_2) \hat h_t \ \text{(on refresh steps)},\quad
        \hat h_t = \frac{1}{n}\sum_i z_i \odot (H_t z_i) \\
        p_t = p_{t-1} - \eta\, \operatorname{clip}\!\Big(\frac{m_t}{\max(h_t, \epsilon)}, -p, p\Big)

    as pytorch_optimizer writes it (the paper's :math:`\rho` and unit clip folded into the clip bound ``p``;
    no bias correction). Refreshes happen at steps :math:`1, 1+k, 1+2k, \ldots` with ``k = update_period``.
    Decoupled weight decay by default. Call it as ``opt.step_with(model, mlx_optim.value_and_grad(model,
    loss_fn), *batch)`` (Hessian-vector products by ``mx.jvp``) or pass an estimate:
    ``opt.update(model, grads, hessian=h)``. As in the reference, the Hessian is that of the loss even with
    ``maximize``.

    Paper: Liu et al., "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
    Pre-training", ICLR 2024, arXiv:2305.14342.

    Reference: ``pytorch_optimizer.SophiaH`` (parity-checked). Difference: the probes come from the key in
    ``state["key"]`` (``seed``) instead of torch's global generator.

    Args:
        p: Clip bound of the preconditioned step (>= 0). Default ``1e-2``.
        num_samples: Number of Hutchinson probes :math:`z_i` per refresh (>= 1). Default ``1``.
        hessian_distribution: Distribution of the probes, ``"gaussian"`` or ``"rademacher"``.
            Default ``"gaussian"``.
        eps: Lower bound of the curvature in the denominator (>= 0). Default ``1e-12``.
        seed: Seed of the probes' random key (keyword-only). Default ``0``.
    """

    name = "sophiah"
    family = "second-order"
    reference = "pytorch_optimizer.SophiaH"

    def __init__(
        self,
        learning_rate: Tunable = 6e-2,
        betas: Sequence[float] = (0.96, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        p: Tunable = 1e-2,
        update_period: int = 10,
        num_samples: int = 1,
        hessian_distribution: str = "gaussian",
        eps: Tunable = 1e-12,
        maximize: bool = False,
        *,
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
        self._hyper("p", p, 0.0)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum"] = self.zeros(parameter)
        state["hessian_moment"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        h_hat = self.take_hessian(state, g.dtype)
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["momentum"], g, hp.one_minus_beta1)
        h = state["hessian_moment"]
        if h_hat is not None:
            h = mx.where(hp.refresh, F.lerp(h, h_hat, hp.one_minus_beta2), h)
        state["momentum"], state["hessian_moment"] = m, h
        return p - hp.lr * mx.clip(m / mx.maximum(h, hp.eps), -hp.p, hp.p)


SOPHIAG_EPS = 1e-15  # the official SophiaG's fixed denominator term


@register
@_sophia_args
class SophiaG(_CurvatureOptimizer):
    r"""SophiaG: Sophia with the Gauss-Newton-Bartlett (GNB) curvature estimate, a clipped second-order update.

    .. math::
        \hat h_t = B\, \hat g_t \odot \hat g_t,\quad
        \hat g_t = \nabla \tfrac{1}{B}\textstyle\sum_b \ell_{ce}(f(\theta_t, x_b), \hat y_b),\quad
        \hat y_b \sim \operatorname{softmax}(f(\theta_t, x_b)) \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        h_t = \beta_2 h_{t-1} + (1-\beta_2) \hat h_t \ \text{(on refresh steps)} \\
        p_t = p_{t-1} - \eta\, \operatorname{sign}(m_t)
              \min\!\Big(\frac{|m_t|}{\rho\, h_t + 10^{-15}}, 1\Big)

    after weight decay (decoupled by default, ``fixed_decay``: without the learning rate; else L2 in the
    gradient). Refreshes happen at steps :math:`1, 1+k, \ldots` (``k = update_period``), as in the paper's
    Algorithm 3 and in SophiaH. Call it as ``opt.step_with(model, mlx_optim.value_and_grad(model, loss_fn,
    logits_fn=...), *batch)``: the labels are sampled with the key in ``state["key"]`` (``seed``), ``B`` is
    the number of sampled labels (all positions of the logits but the last axis). Or pass an estimate:
    ``opt.update(model, grads, hessian=h_hat)``.

    Paper: Liu et al., "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
    Pre-training", ICLR 2024, arXiv:2305.14342 (Algorithms 2 and 3).

    Reference: the official ``SophiaG`` (github.com/Liuhong99/Sophia); there is no pytorch_optimizer class.
    The official code keeps the EMA of :math:`\hat g^2` and multiplies ``rho`` by a ``bs`` argument of
    ``step()``; we fold ``B`` into :math:`\hat h` as the paper writes it (identical when ``bs = B``).
    ``weight_decouple`` / ``fixed_decay`` (the official code always decouples), ``update_period`` (the
    official ``hess_interval``, a training-loop setting there) and ``seed`` are additions.

    Args:
        rho: Scale :math:`\rho` of the curvature in the clipped ratio (>= 0). Default ``0.04``.
        seed: Seed of the key that samples the labels (keyword-only). Default ``0``.
    """

    name = "sophiag"
    wrap_hint = "mlx_optim.value_and_grad(model, loss_fn, logits_fn=lambda model, *batch: logits)"
    family = "second-order"
    reference = "Liuhong99/Sophia:SophiaG"

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        betas: Sequence[float] = (0.965, 0.99),
        rho: Tunable = 0.04,
        weight_decay: Tunable = 1e-1,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        update_period: int = 10,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate, update_period=update_period, seed=seed, maximize=maximize, state_dtype=state_dtype
        )
        self._betas(betas, 2)
        self._hyper("rho", rho, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)

    def estimate(self, lg, model, key, *args, **kwargs):
        return lg.gnb(model, key, *args, **kwargs)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["hessian"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        h_hat = self.take_hessian(state, g.dtype)
        p, g = self.decay_weights(p, g)
        m = hp.beta1 * state["exp_avg"] + hp.one_minus_beta1 * g
        h = state["hessian"]
        if h_hat is not None:
            h = mx.where(hp.refresh, hp.beta2 * h + hp.one_minus_beta2 * h_hat, h)
        state["exp_avg"], state["hessian"] = m, h
        ratio = mx.minimum(mx.abs(m) / (hp.rho * h + SOPHIAG_EPS), 1.0)
        return p - hp.lr * F.sign(m) * ratio
