"""AdamP (Heo et al., 2021): Adam without the radial update of scale-invariant weights."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.projections import adamp_projection
from mlx_optim.registry import register


@register
class AdamP(Optimizer):
    r"""AdamP: Adam that removes the radial part of the update for scale-invariant weights.

    .. math::
        u_t = \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon} m_t,\quad
        u_t \leftarrow u_t - \hat p \langle \hat p, u_t\rangle \text{ if } \max|\cos(g_t, p)| < \delta/\sqrt{d},\quad
        p_t = p_{t-1}(1 - \eta\lambda r) - \frac{\eta}{1-\beta_1^t} u_t

    with :math:`m_t`, :math:`v_t` Adam's moment EMAs and :math:`\hat p = p/\lVert p\rVert`. The projection is
    tried per output channel, then per layer (tensors with more than one dimension only); a projected tensor
    uses the weight-decay ratio ``r = wd_ratio`` (else 1).

    Paper: "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights" (Heo et al.),
    ICLR 2021. Reference: ``pytorch_optimizer.AdamP``, same keywords and defaults; its ``use_gc``,
    ``adanorm``, ``adanorm_r``, ``cautious`` and ``adam_debias`` options (``**kwargs``) are keyword-only
    arguments here. Reference quirk kept for parity: the L2 penalty (``weight_decouple=False``) is added to the
    gradient after the moments were updated, so it has no effect.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd r)``; ``False`` selects the
            reference's L2 penalty, which has no effect (see above). Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        delta: Threshold :math:`\delta` of the cosine test that deems a tensor scale-invariant. Default ``0.1``.
        wd_ratio: Weight-decay ratio :math:`r` in [0, 1] of the projected (scale-invariant) tensors. Default
            ``0.1``.
        nesterov: Use the Nesterov direction :math:`\beta_1 m_t + (1-\beta_1) g_t` instead of :math:`m_t`.
            Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        use_gc: Gradient centralization: subtract from each gradient with more than one dimension its mean over
            all axes but the first. Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to the first moment up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        cautious: Zero the first moment's entries whose sign disagrees with the gradient's (the rest rescaled
            to keep its size). Default ``False``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adamp"
    family = "adam"
    reference = "pytorch_optimizer.AdamP"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        delta: Tunable = 0.1,
        wd_ratio: Tunable = 0.1,
        nesterov: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        use_gc: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        cautious: bool = False,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("delta", delta)
        self._hyper("wd_ratio", wd_ratio, 0.0, 1.0)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r, adam_debias)
        self.weight_decouple, self.fixed_decay, self.nesterov = weight_decouple, fixed_decay, nesterov
        self.use_gc, self.cautious = use_gc, cautious

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr, rectify=False)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.use_gc:
            g = self.apply_gc(g)
        m = hp.ema(state["exp_avg"], self.adanorm_grad(g, state), "beta1")
        v = hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        update = self.apply_cautious(m, g) if self.cautious else m
        if self.nesterov:
            update = hp.ema(update, g, "beta1")
        perturb = update * (hp.bc2_sqrt / (mx.sqrt(v) + hp.eps))
        ratio = 1.0
        if p.ndim > 1:
            perturb, ratio = adamp_projection(p, g, perturb, hp.delta, hp.wd_ratio, hp.eps)
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, ratio=ratio)
        return p - hp.step_size * perturb
