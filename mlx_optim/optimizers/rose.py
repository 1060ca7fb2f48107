"""ROSE: stateless gradient steps scaled by row ranges."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.precision import stochastic_round
from mlx_optim.registry import register


def rose_denominator(g: mx.array, stabilize: bool) -> mx.array:
    """ROSE's per-row range ``|max g| - min g`` over all axes but the first (over the whole vector for 1-D).

    With ``stabilize`` (ndim >= 2) the ranges are blended with their mean by the trust
    ``mean / (std + mean)`` (population std over the rows). Zero ranges become 1.
    """
    if g.ndim == 1:
        de_nom = mx.abs(mx.max(g)) - mx.min(g)
    else:
        axes = tuple(range(1, g.ndim))
        raw = mx.abs(mx.max(g, axis=axes, keepdims=True)) - mx.min(g, axis=axes, keepdims=True)
        if stabilize:
            mean = mx.mean(raw)
            std = mx.sqrt(mx.mean(mx.square(raw - mean)))
            trust = mean / mx.where(mean == 0.0, 1.0, std + mean)
            de_nom = F.torch_lerp(mean, raw, trust)
        else:
            de_nom = raw
    return mx.where(de_nom == 0.0, 1.0, de_nom)


@register
class ROSE(Optimizer):
    r"""ROSE: stateless gradient steps normalized by the range of each row of the gradient.

    For a parameter with two or more axes the gradient is centred per row (``centralize``) and divided by its
    per-row range ``r = |max g| - min g`` (over all axes but the first); with ``stabilize`` the ranges are
    blended with their mean ``\bar r`` by the trust ``\tau = \bar r / (\operatorname{std}(r) + \bar r)``. A
    vector is divided by its whole range; a scalar takes a sign step.

    .. math::
        d = \bar r + \tau (r - \bar r),\quad p_t = p_{t-1} - \eta\, \frac{g_t}{d}\quad (d = 1 \text{ where } d = 0)

    ``bf16_sr`` (default on) writes bfloat16 parameters back with stochastic rounding (a key kept in
    ``state["sr_key"]``), so steps below bf16's spacing still move them in expectation. ROSE keeps no
    optimizer state per parameter.

    Paper: MatthewK78, "Stateless optimization through range-normalized gradient updates"
    (github.com/MatthewK78/Rose).

    Reference: ``pytorch_optimizer.ROSE`` (parity-checked). Differences: ``wd_schedule=True`` takes the
    initial learning rate (the schedule's value at step 0), which is what the reference reads from the
    ``initial_lr`` that torch schedulers set. The torch knob ``compute_dtype`` is not ported: the update runs
    in float32 for float32/bf16/fp16 parameters (the reference computes in float64 by default).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        weight_decay: Weight decay coefficient (>= 0). Default ``1e-4``.
        wd_schedule: Scale the decoupled weight decay's learning rate to ``lr / lr_ref``, so that it follows
            the learning-rate schedule relative to ``lr_ref``: a number (> 0) is ``lr_ref``, ``True`` takes the
            initial learning rate; ``False`` (or 0) uses ``lr``. Default ``False``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``False``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        centralize: Subtract each row's mean from the gradient of tensors with two or more axes.
            Default ``True``.
        stabilize: Blend the row ranges with their mean (see above). Default ``True``.
        bf16_sr: Write bfloat16 parameters back with stochastic rounding. Default ``True``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        seed: Seed of the stochastic-rounding key (keyword-only). Default ``0``.
        state_dtype: dtype of the optimizer state; ROSE keeps none per parameter. Default ``None``.
    """

    name = "rose"
    family = "other"
    reference = "pytorch_optimizer.ROSE"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        weight_decay: Tunable = 1e-4,
        wd_schedule: bool | float = False,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        centralize: bool = True,
        stabilize: bool = True,
        bf16_sr: bool = True,
        maximize: bool = False,
        *,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self.bf16_sr, self._round_bf16 = bf16_sr, False
        if bf16_sr:
            self.globals["sr_key"] = mx.random.key(seed)
        self.lr_ref: float | None = None
        if wd_schedule is True:
            self.lr_ref = float(learning_rate(mx.array(0))) if callable(learning_rate) else float(learning_rate)
        elif wd_schedule:  # a number: lr_ref (0 / False: off, as in the reference)
            self._check("wd_schedule", wd_schedule, 0.0, None, "()")
            self.lr_ref = float(wd_schedule)
        self.wd_schedule, self.centralize, self.stabilize = wd_schedule, centralize, stabilize

    def init_single(self, parameter: mx.array, state: dict) -> None:
        pass

    def step_scalars(self, hp) -> None:
        hp.wd_lr = hp.lr if self.lr_ref is None else hp.lr / self.lr_ref
        if self.bf16_sr:
            self.globals["sr_key"], self._sr_key = mx.random.split(self.globals["sr_key"])

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        self._round_bf16 = self.bf16_sr and parameter.dtype == mx.bfloat16
        return super().apply_single(gradient, parameter, state)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g, lr=hp.wd_lr)
        if g.ndim == 0:
            new = p - hp.lr * F.sign(g)
        else:
            if g.ndim >= 2 and self.centralize:
                g = g - mx.mean(g, axis=tuple(range(1, g.ndim)), keepdims=True)
            new = p - hp.lr * g / rose_denominator(g, self.stabilize)
        if self._round_bf16:  # bf16 parameter: stochastic rounding (the base rounds to nearest)
            self._sr_key, key = mx.random.split(self._sr_key)
            return stochastic_round(new, mx.bfloat16, key)
        return new
