"""Ranger21: AdamW with positive-negative momentum, clipping, normalization and Lookahead."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.functional.lookahead import lookahead_merge
from mlx_optim.functional.subset_norm import sn_expand, sn_reduce
from mlx_optim.registry import register


def pn_momentum(grad_ma: mx.array, neg_grad_ma: mx.array, beta0) -> mx.array:
    """Positive-negative momentum: ``((1 + beta0) m_this - beta0 m_other) / sqrt((1+beta0)^2 + beta0^2)``."""
    return ((1 + beta0) * grad_ma - beta0 * neg_grad_ma) / mx.sqrt(mx.square(1 + beta0) + mx.square(beta0))


@register
class Ranger21(Optimizer):
    r"""Ranger21: AdamW with positive-negative momentum, AGC, gradient normalization, norm loss and Lookahead.

    Per step: gradients are AGC-clipped, centralized and normalized (``preprocess``); the second moment
    :math:`v_t` uses the preprocessed gradient and the global :math:`\sigma = \sqrt{(1 + \sum
    v_t/(1-\beta_2^t)) / N}`; stable decoupled weight decay :math:`p \leftarrow p(1 - \eta_t\lambda/\sigma)`;
    norm loss :math:`p \leftarrow p(1 - 2\eta_t \nu (1 - 1/(\lVert p\rVert_{unit}+\epsilon)))`;
    positive-negative momentum with two buffers that swap roles each step (:math:`\hat m \leftarrow \hat m +
    (1-\beta_1^2)(g - \hat m)` on the buffer of this step's parity), AMSGrad + softplus denominator, and
    Lookahead every ``lookahead_merge_time`` steps (:math:`p \leftarrow \alpha p + (1-\alpha)\phi`,
    :math:`\phi \leftarrow p`). The learning rate :math:`\eta_t` follows the built-in linear warm-up /
    warm-down schedule unless ``disable_lr_scheduler``.

    .. math::
        p_t = p - \frac{\eta_t}{1-\beta_1^t}
        \frac{\mathrm{pn}(m^{+}, m^{-})}{\mathrm{softplus}(\sqrt{\max_s v_s}/\sqrt{1-\beta_2^t} + \epsilon)}

    Paper: Wright & Demeure, "Ranger21: a synergistic deep learning optimizer", arXiv:2106.13731, 2021.

    Reference: ``pytorch_optimizer.Ranger21`` (parity-checked), including its ``adam_debias`` option
    (keyword-only here). Reference quirks kept for parity: the gradient is preprocessed (centralize +
    normalize) a second time before the momentum update; with ``weight_decouple=False`` no weight decay is
    applied at all; the warm-down starts from the learning rate (the reference uses the constructor ``lr``,
    the same unless ``learning_rate`` is a schedule).

    Args:
        num_iterations: Total number of training steps, for the built-in learning-rate schedule (> 0;
            required).
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        beta0: Weight :math:`\beta_0` of the negative momentum (the amplitude of the noise
            positive-negative momentum adds), in [0, 1). Default ``0.9``.
        betas: ``(beta1, beta2)``: :math:`\beta_1^2` is the decay of each momentum buffer, :math:`\beta_2` of
            the second moment; each in [0, 1). Default ``(0.9, 0.999)``.
        use_softplus: Pass the denominator through a softplus. Default ``True``.
        beta_softplus: Sharpness :math:`\beta` of ``softplus(x) = log(1 + exp(beta x)) / beta``.
            Default ``50.0``.
        disable_lr_scheduler: Use ``learning_rate`` as given, without the built-in warm-up / warm-down.
            Default ``False``.
        num_warm_up_iterations: Length of the linear warm-up; ``None``: ``ceil(2 / (1 - beta2))``, or 22% of
            ``num_iterations`` when that is more than 45% of it. Default ``None``.
        num_warm_down_iterations: Length of the final linear warm-down to ``warm_down_min_lr``; ``None``:
            the last 28% of ``num_iterations``. Default ``None``.
        warm_down_min_lr: Learning rate at the end of the warm-down (>= 0). Default ``3e-5``.
        agc_clipping_value: Largest gradient-to-parameter norm ratio of adaptive gradient clipping (>= 0).
            Default ``1e-2``.
        agc_eps: Lower bound of the parameter norm in adaptive gradient clipping (>= 0). Default ``1e-3``.
        centralize_gradients: Gradient centralization (subtract each gradient's mean over all axes but the
            first, for tensors with ``ndim > 1``). Default ``True``.
        normalize_gradients: Gradient normalization (divide by the unbiased standard deviation, for tensors
            with more than two elements). Default ``True``.
        lookahead_merge_time: Number of steps between Lookahead merges (> 0). Default ``5``.
        lookahead_blending_alpha: Lookahead interpolation factor :math:`\alpha` from the slow weights toward
            the fast ones. Default ``0.5``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0), divided by :math:`\sigma` (stable
            weight decay). Default ``1e-4``.
        weight_decouple: Apply the decoupled weight decay; ``False`` applies none (reference quirk above).
            Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        norm_loss_factor: Coefficient :math:`\nu` of the norm loss pulling each unit's norm toward 1.
            Default ``1e-4``.
        eps: Term added to the denominator and to the unit norm (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step size by :math:`1-\beta_1^t` (keyword-only). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "ranger21"
    family = "ranger"
    reference = "pytorch_optimizer.Ranger21"
    shared_tunables = ("beta2", "agc_clipping_value", "agc_eps")  # the variance normalizer: in prepare
    subset_norm_keys = ("variance_ma", "max_variance_ma")  # mlx_optim.features: sn hook

    def __init__(
        self,
        num_iterations: int,
        learning_rate: Tunable = 1e-3,
        beta0: Tunable = 0.9,
        betas: Sequence[float] = (0.9, 0.999),
        use_softplus: bool = True,
        beta_softplus: Tunable = 50.0,
        disable_lr_scheduler: bool = False,
        num_warm_up_iterations: int | None = None,
        num_warm_down_iterations: int | None = None,
        warm_down_min_lr: Tunable = 3e-5,
        agc_clipping_value: Tunable = 1e-2,
        agc_eps: Tunable = 1e-3,
        centralize_gradients: bool = True,
        normalize_gradients: bool = True,
        lookahead_merge_time: int = 5,
        lookahead_blending_alpha: Tunable = 0.5,
        weight_decay: Tunable = 1e-4,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        norm_loss_factor: Tunable = 1e-4,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._check("num_iterations", num_iterations, 0, None, "(]")
        self._hyper("warm_down_min_lr", warm_down_min_lr, 0.0)
        self._betas(betas, 2)
        self._hyper("beta0", beta0, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("agc_clipping_value", agc_clipping_value, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("agc_eps", agc_eps, 0.0)
        self._hyper("beta_softplus", beta_softplus)
        self._hyper("lookahead_blending_alpha", lookahead_blending_alpha)
        self._hyper("norm_loss_factor", norm_loss_factor)
        self._check("lookahead_merge_time", lookahead_merge_time, 0, None, "(]")
        self.use_softplus, self.disable_lr_scheduler = use_softplus, disable_lr_scheduler
        self.centralize_gradients, self.normalize_gradients = centralize_gradients, normalize_gradients
        self.lookahead_merge_time = int(lookahead_merge_time)
        self.weight_decouple, self.fixed_decay, self.adam_debias = weight_decouple, fixed_decay, adam_debias
        num_iterations = int(num_iterations)
        if num_warm_up_iterations is None:  # the reference's build_warm_up_iterations
            warm_up = math.ceil(2.0 / (1.0 - betas[1]))
            num_warm_up_iterations = int(0.22 * num_iterations) if warm_up / num_iterations > 0.45 else warm_up
        if num_warm_down_iterations is None:  # the reference's build_warm_down_iterations
            num_warm_down_iterations = num_iterations - int(0.72 * num_iterations)
        self.num_warm_up_iterations = int(num_warm_up_iterations)
        self.num_warm_down_iterations = int(num_warm_down_iterations)
        self.start_warm_down = num_iterations - self.num_warm_down_iterations

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "grad_ma", "variance_ma")
        state["lookahead_params"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        self.zero_state(parameter, state, "neg_grad_ma", "max_variance_ma")

    def scheduled_lr(self, lr: mx.array, step: mx.array, min_lr: mx.array) -> mx.array:
        """The built-in linear warm-up, then linear warm-down to ``warm_down_min_lr``."""
        if self.disable_lr_scheduler:
            return lr
        n_up = self.num_warm_up_iterations
        if n_up > 0:
            lr_up = mx.where(step > n_up, lr, lr * mx.minimum(step / n_up, 1.0))
        else:
            lr_up = lr
        pct = mx.minimum(mx.maximum(step + 1 - self.start_warm_down, 1.0) / (self.num_warm_down_iterations + 1), 1.0)
        lr_down = mx.maximum(lr - (lr - min_lr) * pct, min_lr)
        return mx.where(step < self.start_warm_down, lr_up, lr_down)

    def step_scalars(self, hp) -> None:
        hp.bc2 = hp.bias_correction("beta2")
        hp.bc2_sqrt = mx.sqrt(hp.bc2)
        hp.r_lr = self.scheduled_lr(hp.lr, hp.step, hp.warm_down_min_lr)
        hp.step_size = hp.r_lr if self.adam_debias else hp.r_lr / hp.bias_correction("beta1")
        hp.odd = mx.remainder(hp.step, 2) == 1
        hp.sync = F.every(hp.step, self.lookahead_merge_time)

    def transform_step(self, g: mx.array, p: mx.array, new: mx.array, state: dict) -> mx.array:
        """Hook for :mod:`mlx_optim.features`: the step before the built-in Lookahead (identity here)."""
        return new

    def preprocess(self, g: mx.array) -> mx.array:
        if self.centralize_gradients:
            g = F.centralize(g)
        if self.normalize_gradients:
            g = F.normalize_gradient(g)
        return g

    def clipped(self, g: mx.array, p: mx.array) -> mx.array:
        """The gradient after AGC and one preprocessing pass (what the second moment sees)."""
        return self.preprocess(F.agc(p, g, self.hp.agc_eps, self.hp.agc_clipping_value))

    def prepare(self, gradients, parameters) -> None:
        """Update every ``variance_ma`` and compute the global variance normalizer ``hp.sigma``."""
        hp = self.hp
        total, count = mx.array(1.0, mx.float32), 0
        for _, g, p, state in leaves(gradients, parameters, self.state):
            dtype = self.compute_dtype(p)
            g, p = g.astype(dtype), p.astype(dtype)
            if self.maximize:
                g = -g
            g = self.clipped(g, p)
            v = F.ema(state["variance_ma"], sn_reduce(mx.square(g), state["variance_ma"]), hp.beta2)
            state["variance_ma"] = v
            total = total + mx.sum(sn_expand(v, g.shape) / hp.bc2).astype(mx.float32)
            count += g.size
        hp.sigma = mx.sqrt(total / max(count, 1))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g = self.preprocess(self.clipped(g, p))  # the reference preprocesses twice
        p0 = p
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, ratio=1 / hp.sigma, lr=hp.r_lr)
        correction = 2 * hp.norm_loss_factor * (1 - 1 / (F.unit_norm(p) + hp.eps))
        p = p * (1 - hp.r_lr * correction)
        v_max = self.apply_amsgrad(state, state["variance_ma"], "max_variance_ma")
        denom = mx.sqrt(sn_expand(v_max, p.shape)) / hp.bc2_sqrt + hp.eps
        if self.use_softplus:
            denom = F.softplus(denom, hp.beta_softplus)
        this = mx.where(hp.odd, state["grad_ma"], state["neg_grad_ma"])
        other = mx.where(hp.odd, state["neg_grad_ma"], state["grad_ma"])
        this = this + (1 - mx.square(hp.beta1)) * (g - this)
        state["grad_ma"] = mx.where(hp.odd, this, state["grad_ma"])
        state["neg_grad_ma"] = mx.where(hp.odd, state["neg_grad_ma"], this)
        p = p - hp.step_size * pn_momentum(this, other, hp.beta0) / denom
        p = self.transform_step(g, p0, p, state)
        # Lookahead: p <- alpha p + (1 - alpha) slow, slow <- p
        slow = state["lookahead_params"]
        p, state["lookahead_params"] = lookahead_merge(p, slow, hp.lookahead_blending_alpha, hp.sync)
        return p
