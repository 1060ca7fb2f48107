"""Prodigy: Adam with a distance estimate that adapts the step size."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Tunable
from mlx_optim.optimizers.dadapt import _DAdaptBase, _scalar, _sum
from mlx_optim.registry import register


@register
class Prodigy(_DAdaptBase):
    r"""Prodigy: a learning-rate-free Adam whose step size comes from an estimate of the distance to the solution.

    With :math:`D_k` the estimate, :math:`\lambda_k = D_k\,\eta` (divided by
    :math:`(1-\beta_1^k)/\sqrt{1-\beta_2^k}` when ``bias_correction``) and
    :math:`\beta_3 = \sqrt{\beta_2}` unless given:

    .. math::
        r_k = \beta_3 r_{k-1} + \tfrac{D_k}{D_0}\lambda_k\langle g_k, x_0 - x_{k-1}\rangle,\quad
        s_k = \beta_3 s_{k-1} + \tfrac{D_k}{D_0}\lambda_k g_k \\
        m_k = \beta_1 m_{k-1} + (1-\beta_1) D_k g_k,\quad
        v_k = \beta_2 v_{k-1} + (1-\beta_2) D_k^2 g_k^2 \\
        \hat D = c\,\frac{r_k}{\lVert s_k\rVert_1},\quad
        D_{\max} \leftarrow \max(D_{\max}, \hat D),\quad
        D_{k+1} = \min(D_{\max},\, D'_k\cdot\text{growth\_rate}) \\
        x_k = x_{k-1} - \lambda_k \frac{m_k}{\sqrt{v_k} + D_{k+1}\epsilon}

    where :math:`D'_k = \max(D_k, \hat D)` while :math:`D_k = D_0` and :math:`D_k` afterwards; with
    ``safeguard_warmup`` the :math:`s_k` increment uses :math:`D_k` instead of :math:`\lambda_k`;
    ``eps=None`` replaces the division by ``atan2(m_k, sqrt(v_k))``. :math:`r_k`, :math:`D_k` and
    :math:`D_{\max}` are ``state["d_numerator"]``, ``state["d"]`` and ``state["d_max"]``; the sums run over
    the whole parameter tree.

    Paper: Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML 2024,
    arXiv:2306.06101.

    Reference: ``pytorch_optimizer.Prodigy`` (parity-checked). Reference order kept: the step uses this
    step's :math:`\lambda_k` but the *new* :math:`D_{k+1}` in the epsilon term; :math:`r_k` is decayed by
    :math:`\beta_3` even on a step skipped because :math:`\lVert s_k\rVert_1 = 0`; decoupled decay shrinks by
    ``lambda_k * weight_decay``. Reference quirk: with ``weight_decouple=False`` the reference adds the L2
    term to the gradient *after* the moments were updated, so it has no effect; this port likewise applies
    no decay in that mode.

    Args:
        learning_rate: Multiplier :math:`\eta` of the adapted step size :math:`D_k`, a float or a schedule
            (a callable of the step); leave it at 1 unless training is unstable. Default ``1.0``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        beta3: Decay rate :math:`\beta_3` of :math:`r_k` and :math:`s_k`, in [0, 1]; ``None`` uses
            :math:`\sqrt{\beta_2}`. Default ``None``.
        d0: Initial distance estimate :math:`D_0`. Default ``1e-6``.
        d_coef: Coefficient :math:`c` of the estimate :math:`\hat D`. Default ``1.0``.
        growth_rate: Largest factor by which :math:`D` may grow per step. Default ``inf``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled weight decay, ``p * (1 - lambda_k * weight_decay)``; ``False`` applies no
            decay (reference quirk above). Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without the step size factor.
            Default ``False``.
        bias_correction: Divide :math:`\lambda_k` by :math:`(1-\beta_1^k)/\sqrt{1-\beta_2^k}` (Adam's bias
            correction). Default ``False``.
        safeguard_warmup: Leave the learning rate out of the :math:`s_k` increment (use :math:`D_k`), which
            keeps a warm-up schedule from shrinking the estimate. Default ``False``.
        eps: Term added to the denominator, scaled by :math:`D_{k+1}` (>= 0); ``None`` uses
            ``atan2(m, sqrt(v))`` instead of the division. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "prodigy"

    zero_compatible = True  # its cross-leaf sums go through global_sum
    reference = "pytorch_optimizer.Prodigy"
    # as the reference, which reads these from the first group; weight_decay and eps are per group
    shared_tunables = ("learning_rate", "beta1", "beta2", "beta3", "d0", "d_coef", "growth_rate")

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.9, 0.999),
        beta3: Tunable | None = None,
        d0: Tunable = 1e-6,
        d_coef: Tunable = 1.0,
        growth_rate: Tunable = float("inf"),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        bias_correction: bool = False,
        safeguard_warmup: bool = False,
        eps: Tunable | None = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self.auto_beta3 = beta3 is None
        if not self.auto_beta3:
            self._hyper("beta3", beta3, 0.0, 1.0, "[]")
        self._hyper("d0", d0)
        self._hyper("d_coef", d_coef)
        self._hyper("growth_rate", growth_rate)
        self._hyper("weight_decay", weight_decay, 0.0)
        self.use_eps = eps is not None
        if self.use_eps:
            self._hyper("eps", eps, 0.0)
        self.weight_decouple, self.fixed_decay = weight_decouple, fixed_decay
        self.bias_correction, self.safeguard_warmup = bias_correction, safeguard_warmup
        d0 = float(d0(mx.array(0))) if callable(d0) else float(d0)
        self._global("d", d0)
        self._global("d_max", d0)
        self._global("d_numerator", 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.zeros(parameter)
        state["p0"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        if self.auto_beta3:
            hp.beta3 = mx.sqrt(hp.beta2)
        hp.d = self.globals["d"]
        hp.d_lr = hp.d * hp.lr
        if self.bias_correction:
            hp.d_lr = hp.d_lr / (hp.bias_correction("beta1") / mx.sqrt(hp.bias_correction("beta2")))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp, st = self.hp, self.globals
        d, ratio = hp.d, hp.d / hp.d0
        numerator, de_nom = _scalar(), _scalar()
        for g, p, state in self._leaves(gradients, parameters):
            numerator = numerator + ratio * hp.d_lr * _sum(g * (state["p0"] - p))
            state["exp_avg"] = hp.beta1 * state["exp_avg"] + d * hp.one_minus_beta1 * g
            state["exp_avg_sq"] = hp.beta2 * state["exp_avg_sq"] + d * d * hp.one_minus_beta2 * mx.square(g)
            s = hp.beta3 * state["s"] + ratio * (d if self.safeguard_warmup else hp.d_lr) * g
            state["s"] = s
            de_nom = de_nom + _sum(mx.abs(s))
        numerator = st["d_numerator"] * hp.beta3 + self.global_sum(numerator)
        de_nom = self.global_sum(de_nom)
        st["d_numerator"] = numerator
        hp.skip = de_nom == 0
        d_hat = hp.d_coef * numerator / de_nom
        d_grown = mx.where(d == hp.d0, mx.maximum(d, d_hat), d)
        d_max = mx.maximum(st["d_max"], d_hat)
        st["d"] = mx.where(hp.skip, d, mx.minimum(d_max, d_grown * hp.growth_rate))
        st["d_max"] = mx.where(hp.skip, st["d_max"], d_max)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        self._param_dtype = parameter.dtype  # update_single folds the rounding to this dtype into p0
        return super().apply_single(gradient, parameter, state)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        new = self._decouple_step(p, hp.d_lr) if self.weight_decouple else p
        m, de_nom = state["exp_avg"], mx.sqrt(state["exp_avg_sq"])
        if self.use_eps:
            new = new - hp.d_lr * m / (de_nom + self.globals["d"] * hp.eps)
        else:
            new = new - hp.d_lr * mx.arctan2(m, de_nom)
        new = mx.where(hp.skip, p, new)
        low = getattr(self, "_param_dtype", new.dtype)
        if low != new.dtype and low in (mx.bfloat16, mx.float16):
            # A bf16/fp16 parameter cannot hold Prodigy's first steps (d0 * lr = 1e-6, below half a bf16 ulp for
            # any |p| > ~1e-3): rounded back, x0 - x stays 0, so does D's numerator, and D never leaves d0. Shift
            # p0 by the rounding error, so p0 - p is the distance the float32 updates travelled.
            state["p0"] = state["p0"] + (new.astype(low).astype(new.dtype) - new)
        return new
