"""SPAM: spike-aware Adam with momentum reset."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def spam_death_rate(c: mx.array, warmup_epoch: int) -> mx.array:
    """SPAM's cosine warm-up ``0.99 (1 + cos(pi (c + 1) / (W + 1))) / 2`` for ``c < W``, else 0.

    Closed form of the reference's ``CosineDecay(0.99, W).get_death_rate(c)`` called at
    consecutive ``c = 0, 1, ...`` after each reset.
    """
    decay = 0.99 * (1 + mx.cos(math.pi * (c + 1) / (warmup_epoch + 1))) / 2
    return mx.where(c >= warmup_epoch, 0.0, decay)


def spam_spike_clip(g: mx.array, v: mx.array, threshold) -> mx.array:
    """SPAM's spike clipping: where ``g^2 > threshold * v`` replace ``g`` by ``sign(g) sqrt(threshold * v)``."""
    limit = threshold * v
    return mx.where(mx.square(g) > limit, F.sign(g) * mx.sqrt(limit), g)


@register
class SPAM(Optimizer):
    r"""SPAM: spike-aware Adam with periodic momentum reset, spike clipping and optional sparse masks.

    Adam with (1) momentum reset every ``update_proj_gap`` steps, followed by a cosine warm-up of the step
    size over ``warmup_epoch`` steps, (2) spike clipping :math:`g \leftarrow \operatorname{sign}(g)\sqrt{\theta
    v}` where :math:`g^2 > \theta v` (from step ``grad_accu_steps`` on, and not in the first
    ``grad_accu_steps`` steps after a reset) and (3) for ``density < 1`` a random sparse mask on 2-D
    parameters (only masked entries are updated and decayed), redrawn at each reset:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - s_t\,\eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\frac{m_t}{\sqrt{v_t} + \epsilon},\quad
        p_t \leftarrow p_t (1 - \eta\lambda)

    with :math:`s_t = 1 - \text{death rate}` of the warm-up. With the default ``density=1`` no masks are
    kept and the update is deterministic.

    Paper: Huang et al., "SPAM: Spike-Aware Adam with Momentum Reset for Stable LLM Training", ICLR 2025,
    arXiv:2501.06842.

    Reference: ``pytorch_optimizer.SPAM`` (parity-checked). Differences: the moments of masked tensors are
    kept dense (zero outside the mask) instead of compact. Masks are drawn from a key kept in the state
    (``seed``, not in the reference), the first mask with exactly ``int(density * numel)`` entries like the
    reference, later ones entry-wise with probability ``density``.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        density: Fraction of the entries of each 2-D parameter that are trained (>= 0; 1 trains all and
            keeps no masks). Default ``1.0``.
        weight_decay: Decoupled weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        warmup_epoch: Length in steps of the cosine step-size warm-up after each reset (>= 0).
            Default ``50``.
        threshold: Spike threshold :math:`\theta` (>= 0; 0 disables the clipping). Default ``5000``.
        grad_accu_steps: Steps after the start and after each reset without spike clipping (>= 0).
            Default ``20``.
        update_proj_gap: Steps between momentum resets (and mask redraws) (> 0). Default ``500``.
        eps: Term added to the denominator (>= 0). Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        seed: Seed of the masks' random key (keyword-only). Default ``0``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "spam"
    family = "adam"
    reference = "pytorch_optimizer.SPAM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        density: float = 1.0,
        weight_decay: Tunable = 0.0,
        warmup_epoch: int = 50,
        threshold: Tunable = 5000,
        grad_accu_steps: int = 20,
        update_proj_gap: int = 500,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("density", density, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("warmup_epoch", warmup_epoch, 0)
        self._hyper("threshold", threshold, 0.0)
        self._check("grad_accu_steps", grad_accu_steps, 0)
        self._check("update_proj_gap", update_proj_gap, 0, None, "(]")
        self._hyper("eps", eps, 0.0)
        self.density, self.warmup_epoch = float(density), int(warmup_epoch)
        self.grad_accu_steps, self.update_proj_gap = int(grad_accu_steps), int(update_proj_gap)
        self.use_masks = self.density < 1.0
        self.globals["key"] = mx.random.key(seed)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
        if self.use_masks and parameter.ndim == 2:
            key, mask_key, leaf_key = mx.random.split(self.globals["key"], 3)
            self.globals["key"] = key
            n = parameter.size
            order = mx.argsort(mx.argsort(mx.random.uniform(shape=(n,), key=mask_key)))
            state["mask"] = (order < int(self.density * n)).reshape(parameter.shape)
            state["key"] = leaf_key

    def step_scalars(self, hp) -> None:
        t, gap, warm = hp.step, self.update_proj_gap, self.warmup_epoch
        phase = mx.remainder(t, gap)
        hp.reset = phase == 0
        hp.new_masks = mx.remainder(t + 1, gap) == 0  # used for the next step, which resets the moments
        hp.clip = (t >= self.grad_accu_steps) & (phase >= self.grad_accu_steps)
        since_reset = mx.where(t >= max(gap, 2), phase, warm + t)
        scale = 1.0 - spam_death_rate(since_reset, warm)
        bc1 = hp.bias_correction("beta1", t)
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2", t)) / bc1 * scale

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        mask = state.get("mask")
        m = mx.where(hp.reset, 0.0, state["exp_avg"])
        v = mx.where(hp.reset, 0.0, state["exp_avg_sq"])
        if "threshold" not in self._zero:
            g = mx.where(hp.clip, spam_spike_clip(g, v, hp.threshold), g)
        m = F.lerp(m, g, hp.one_minus_beta1)
        v = hp.beta2 * v + hp.one_minus_beta2 * mx.square(g)
        if mask is not None:
            m, v = mx.where(mask, m, 0.0), mx.where(mask, v, 0.0)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        new = p - hp.step_size * m / (mx.sqrt(v) + hp.eps)
        decayed, _ = self.apply_weight_decay(new, g, decouple=True)
        if mask is None:
            return decayed
        key, sub = mx.random.split(state["key"])  # redraw the mask at the end of the step before a reset
        state["key"] = key
        state["mask"] = mx.where(hp.new_masks, mx.random.uniform(shape=p.shape, key=sub) < self.density, mask)
        return mx.where(mask, decayed, p)
