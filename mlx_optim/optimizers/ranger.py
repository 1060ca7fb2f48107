"""Ranger, Ranger2020, RangerQH and RangerVA: Adam variants with Lookahead."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, state_copy
from mlx_optim.functional.lookahead import lookahead_merge
from mlx_optim.functional.subset_norm import sn_expand, sn_reduce
from mlx_optim.registry import register


@register
class Ranger(Optimizer):
    r"""Ranger: RAdam + Lookahead + gradient centralization.

    The gradient is centralized (``use_gc``; only for ndim > 3 with ``gc_conv_only``), weight decay is
    decoupled by default, then a RAdam step with rectification :math:`r_t` (see :class:`~mlx_optim.RAdam`);
    every ``k`` steps the Lookahead slow weights :math:`\phi` are merged:

    .. math::
        p_t = p_{t-1} - \frac{\eta\, r_t}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t} + \epsilon},\qquad
        t \bmod k = 0:\ \phi \leftarrow \phi + \alpha (p_t - \phi),\ p_t \leftarrow \phi

    Paper: Wright, "Ranger" (2019), combining RAdam (Liu et al., arXiv:1908.03265), Lookahead (Zhang et al.,
    "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019, arXiv:1907.08610) and gradient
    centralization (Yong et al., ECCV 2020, arXiv:2004.01461).

    Reference: ``pytorch_optimizer.Ranger`` (parity-checked), including its ``adam_debias`` / ``adanorm`` /
    ``adanorm_r`` options (keyword-only here). Reference quirk kept for parity: while the SMA length is below
    ``n_sma_threshold`` and ``degenerated_to_sgd=False``, pytorch_optimizer's Ranger uses :math:`r_t=-1` in
    ``p -= step_size * m`` (RAdam skips that step instead), i.e. it moves *along* the first moment for the
    first few steps.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.95, 0.999)``.
        alpha: Lookahead interpolation factor :math:`\alpha` from the slow weights toward the fast ones, in
            [0, 1]. Default ``0.5``.
        k: Number of steps between Lookahead merges (> 0). Default ``6``.
        n_sma_threshold: The length of the approximated simple moving average from which RAdam's rectified
            adaptive step is used. Default ``5``.
        degenerated_to_sgd: Before the threshold, take momentum steps :math:`\eta m_t/(1-\beta_1^t)`
            instead of the reference's reversed ones (see above). Default ``False``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        use_gc: Gradient centralization (subtract each gradient's mean over all axes but the first, for
            tensors with ``ndim > 1``). Default ``True``.
        gc_conv_only: Centralize only tensors with ``ndim > 3`` (convolution kernels). Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-5``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step size by :math:`1-\beta_1^t` (keyword-only). Default ``False``.
        adanorm: AdaNorm: rescale the gradient entering the first moment up to the running average of its
            norm (keyword-only). Default ``False``.
        adanorm_r: Decay rate of AdaNorm's running norm average, in [0, 1] (keyword-only). Default ``0.95``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "ranger"
    family = "ranger"
    reference = "pytorch_optimizer.Ranger"
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: element-wise second moments (sn hook)

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.95, 0.999),
        alpha: Tunable = 0.5,
        k: int = 6,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = False,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        use_gc: bool = True,
        gc_conv_only: bool = False,
        eps: Tunable = 1e-5,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("alpha", alpha, 0.0, 1.0)
        self._check("k", k, 0, None, "(]")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r, adam_debias)
        self._rectify_options(n_sma_threshold, degenerated_to_sgd)
        self.k, self.use_gc, self.gc_conv_only = int(k), use_gc, gc_conv_only

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
        state["slow_buffer"] = state_copy(self, parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr)
        hp.sync = F.every(hp.step, self.k)

    def direction(self, m: mx.array, v: mx.array) -> mx.array:
        """The RAdam direction: ``m / (sqrt(v) + eps)`` once rectified, else ``m``."""
        return mx.where(self.hp.rectified, m / (mx.sqrt(v) + self.hp.eps), m)

    def transform_step(self, g: mx.array, p: mx.array, new: mx.array, state: dict) -> mx.array:
        """Hook for :mod:`mlx_optim.features`: the step before the built-in Lookahead (identity here)."""
        return new

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.use_gc:
            g = self.apply_gc(g, conv_only=self.gc_conv_only)
        p0 = p
        p, g = self.decay_weights(p, g)
        m = hp.ema(state["exp_avg"], self.adanorm_grad(g, state), "beta1")
        v = F.ema(state["exp_avg_sq"], sn_reduce(mx.square(g), state["exp_avg_sq"]), hp.beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        p = p - hp.step_size * self.direction(m, sn_expand(v, p.shape))
        p = self.transform_step(g, p0, p, state)
        p, state["slow_buffer"] = lookahead_merge(p, state["slow_buffer"], hp.alpha, hp.sync)
        return p


@register
class Ranger2020(Ranger):
    r"""Ranger2020: Ranger with the ``gc_loc`` option of lessw2020's ``ranger2020.py``.

    ``gc_loc=True`` (default) centralizes the gradient before the moments, exactly :class:`Ranger`;
    ``gc_loc=False`` leaves the gradient alone and centralizes the update direction
    (:math:`m_t/(\sqrt{v_t}+\epsilon)`, or :math:`m_t` before rectification) instead. Everything else is
    pytorch_optimizer's Ranger.

    Paper: as :class:`Ranger`; ``gc_loc`` from lessw2020's Ranger-Deep-Learning-Optimizer (``ranger2020.py``).

    Reference: ``pytorch_optimizer.Ranger`` for ``gc_loc=True``; ``gc_loc=False`` is checked against a torch
    transcription of Ranger with the option. Deliberately *not* ported from ``ranger2020.py``: its strict
    ``N_sma > threshold``, its SGD-momentum fallback and its weight decay added to the update (this class
    keeps Ranger's decoupled decay and rectification rules).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.95, 0.999)``.
        alpha: Lookahead interpolation factor :math:`\alpha` from the slow weights toward the fast ones, in
            [0, 1]. Default ``0.5``.
        k: Number of steps between Lookahead merges (> 0). Default ``6``.
        n_sma_threshold: The length of the approximated simple moving average from which RAdam's rectified
            adaptive step is used. Default ``5``.
        degenerated_to_sgd: Before the threshold, take momentum steps :math:`\eta m_t/(1-\beta_1^t)`
            instead of the reference's reversed ones (see above). Default ``False``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        use_gc: Gradient centralization (subtract each gradient's mean over all axes but the first, for
            tensors with ``ndim > 1``). Default ``True``.
        gc_conv_only: Centralize only tensors with ``ndim > 3`` (convolution kernels). Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-5``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        gc_loc: With ``use_gc``, centralize the gradient (``True``) or the update direction (``False``)
            (keyword-only). Default ``True``.
        adam_debias: Do not divide the step size by :math:`1-\beta_1^t` (keyword-only). Default ``False``.
        adanorm: AdaNorm: rescale the gradient entering the first moment up to the running average of its
            norm (keyword-only). Default ``False``.
        adanorm_r: Decay rate of AdaNorm's running norm average, in [0, 1] (keyword-only). Default ``0.95``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "ranger2020"
    reference = "pytorch_optimizer.Ranger (gc_loc=True); Ranger + gc_loc transcription otherwise"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.95, 0.999),
        alpha: Tunable = 0.5,
        k: int = 6,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = False,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        use_gc: bool = True,
        gc_conv_only: bool = False,
        eps: Tunable = 1e-5,
        maximize: bool = False,
        *,
        gc_loc: bool = True,
        adam_debias: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate, betas, alpha, k, n_sma_threshold, degenerated_to_sgd, weight_decay, weight_decouple,
            fixed_decay, gc_loc and use_gc, gc_conv_only, eps, maximize, adam_debias=adam_debias, adanorm=adanorm,
            adanorm_r=adanorm_r, state_dtype=state_dtype,
        )  # fmt: skip
        self.gc_loc = gc_loc
        self.gc_update = use_gc and not gc_loc

    def direction(self, m: mx.array, v: mx.array) -> mx.array:
        d = super().direction(m, v)
        return self.apply_gc(d, conv_only=self.gc_conv_only) if self.gc_update else d


@register
class RangerQH(Optimizer):
    r"""RangerQH: quasi-hyperbolic Adam (QHAdam) + Lookahead, as in lessw2020's ``pytorch_ranger``.

    The moments use QHAdam's bias-free weights :math:`w_{i,t} = 1 + \beta_i w_{i,t-1}`,
    :math:`\bar\beta_{i,t} = 1 - 1/w_{i,t}` (kept in ``state["beta1_weight"]`` / ``state["beta2_weight"]``):

    .. math::
        m_t = \bar\beta_{1,t} m_{t-1} + (1-\bar\beta_{1,t}) g_t,\quad
        v_t = \bar\beta_{2,t} v_{t-1} + (1-\bar\beta_{2,t}) g_t^2 \\
        p_t = p_{t-1} - \eta \frac{(1-\nu_1) g_t + \nu_1 m_t}{\sqrt{(1-\nu_2) g_t^2 + \nu_2 v_t} + \epsilon}

    then Lookahead every ``k`` steps. ``weight_decay`` is L2 unless ``decouple_weight_decay``
    (``p *= 1 - lr wd``).

    Paper: QHAdam is Ma & Yarats, "Quasi-hyperbolic momentum and Adam for deep learning", ICLR 2019,
    arXiv:1810.06801; Lookahead is Zhang et al., NeurIPS 2019, arXiv:1907.08610.

    Reference: ``pytorch_ranger.RangerQH`` (parity-checked). Reference quirk kept for parity: with decoupled
    decay the slow weights start from the parameters *after* the first step's decay. The reference has no
    ``maximize``.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        nus: ``(nu1, nu2)``, the weights of the moment estimates against the current gradient in the
            numerator and the denominator. Default ``(0.7, 1.0)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        k: Number of steps between Lookahead merges (> 0). Default ``6``.
        alpha: Lookahead interpolation factor from the slow weights toward the fast ones. Default ``0.5``.
        decouple_weight_decay: Decoupled weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``False``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "rangerqh"
    family = "ranger"
    reference = "pytorch_ranger.RangerQH"
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: sn hook
    # the QH step (8 operations deep below the new p) under Lookahead's merge and selects exceeds mx.compile's
    # depth of 11, and the chained merge cuts the moments into 5 pieces: step, merge, one select per output
    ops_per_leaf = 4

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        nus: Sequence[float] = (0.7, 1.0),
        weight_decay: Tunable = 0.0,
        k: int = 6,
        alpha: Tunable = 0.5,
        decouple_weight_decay: bool = False,
        eps: Tunable = 1e-8,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._betas(betas, 2)
        nus = tuple(nus)
        if len(nus) != 2:
            raise ValueError(f"RangerQH: nus={nus!r} must have 2 values")
        self._hyper("nu1", nus[0])
        self._hyper("nu2", nus[1])
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("k", k, 0, None, "(]")
        self._hyper("alpha", alpha)
        self._hyper("eps", eps, 0.0)
        self.k, self.decouple_weight_decay = int(k), decouple_weight_decay
        self.globals["beta1_weight"] = mx.array(0.0, mx.float32)
        self.globals["beta2_weight"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["slow_buffer"] = state_copy(self, parameter)

    def step_scalars(self, hp) -> None:
        w1 = 1.0 + hp.beta1 * self.globals["beta1_weight"]
        w2 = 1.0 + hp.beta2 * self.globals["beta2_weight"]
        self.globals["beta1_weight"], self.globals["beta2_weight"] = w1, w2
        hp.beta1_adj, hp.beta2_adj = 1.0 - 1.0 / w1, 1.0 - 1.0 / w2
        # the complements F.ema and the QH mixes would compute per leaf (mlx_optim.fusion)
        hp.c1, hp.c2 = 1.0 - hp.beta1_adj, 1.0 - hp.beta2_adj
        hp.nu1_c, hp.nu2_c = hp.one_minus_nu1, hp.one_minus_nu2
        hp.sync = F.every(hp.step, self.k)
        hp.first = hp.step == 1

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.decouple_weight_decay)
        if self.decouple_weight_decay:  # the reference copies the slow weights after the first decay
            state["slow_buffer"] = mx.where(hp.first, p, state["slow_buffer"])
        g2 = sn_reduce(mx.square(g), state["exp_avg_sq"])
        m = hp.beta1_adj * state["exp_avg"] + hp.c1 * g  # = F.ema(exp_avg, g, beta1_adj)
        v = hp.beta2_adj * state["exp_avg_sq"] + hp.c2 * g2
        state["exp_avg"], state["exp_avg_sq"] = m, v
        num = hp.nu1 * m + hp.nu1_c * g
        denom = mx.sqrt(sn_expand(hp.nu2 * v + hp.nu2_c * g2, p.shape)) + hp.eps
        p = p - hp.lr * num / denom
        # chained=False: the step is too deep to share a kernel with the merge (see ops_per_leaf above)
        p, state["slow_buffer"] = lookahead_merge(p, state["slow_buffer"], hp.alpha, hp.sync, chained=False)
        return p


@register
class RangerVA(Optimizer):
    r"""RangerVA: Adam + Lookahead with a calibrated (softplus) denominator, lessw2020's version 9.13.19A.

    ``pytorch_ranger`` semantics, including its quirks (kept for parity): the second moment is decayed twice
    per step, :math:`v_t = \beta_2(\beta_2 v_{t-1} + (1-\beta_2) g_t^2) + (1-\beta_2)\,\tau(g_t)` with
    :math:`\tau(g) = g^2` (``grad_transformer='square'``) or :math:`|g|` (``'abs'``); ``amsgrad`` keeps the
    running max :math:`\hat v_t`; weight decay is decoupled, ``p *= 1 - lr wd``; ``n_sma_threshhold`` is
    unused (no rectification).

    .. math::
        p_t = p_{t-1} - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t}
              \frac{m_t}{\operatorname{softplus}_{\text{smooth}}(\sqrt{\hat v_t})}

    (no square root for ``'abs'``). With ``transformer`` other than ``'softplus'`` the step is
    :math:`\eta^2\sqrt{1-\beta_2^t}/(1-\beta_1^t)\; m_t/(\sqrt{v_t}+\epsilon)` (the reference multiplies by
    ``lr`` twice there; ``eps`` is only used in that branch). Lookahead every ``k`` steps.

    Paper: Tong et al., "Calibrating the Adaptive Learning Rate to Improve Convergence of ADAM",
    arXiv:1908.00700; Lookahead is Zhang et al., NeurIPS 2019, arXiv:1907.08610.

    Reference: ``pytorch_ranger.RangerVA`` (parity-checked). The reference has no ``maximize``.

    Args:
        learning_rate: Step size :math:`\eta` (> 0), a float or a schedule (a callable of the step).
            Default ``1e-3``.
        alpha: Lookahead interpolation factor from the slow weights toward the fast ones, in [0, 1].
            Default ``0.5``.
        k: Number of steps between Lookahead merges (>= 1). Default ``6``.
        n_sma_threshhold: Accepted for compatibility and unused (spelled as in the reference). Default ``5``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.95, 0.999)``.
        eps: Term added to the denominator when ``transformer`` is not ``"softplus"`` (> 0). Default ``1e-5``.
        weight_decay: Decoupled weight decay coefficient. Default ``0.0``.
        amsgrad: Divide by the running maximum of the second moment. Default ``True``.
        transformer: ``"softplus"`` for the calibrated denominator; anything else gives the plain
            denominator described above. Default ``"softplus"``.
        smooth: Sharpness :math:`\beta` of ``softplus(x) = log(1 + exp(beta x)) / beta``. Default ``50.0``.
        grad_transformer: ``"square"`` (:math:`g^2`) or ``"abs"`` (:math:`|g|`) for the second decay of the
            second moment. Default ``"square"``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "rangerva"
    family = "ranger"
    reference = "pytorch_ranger.RangerVA"
    subset_norm_keys = ("exp_avg_sq", "max_exp_avg_sq")  # mlx_optim.features: sn hook
    # twice-decayed v, AMSGrad, sqrt and softplus (5 deep) under the step and Lookahead exceed mx.compile's depth
    # of 11: one kernel up to sqrt(max v), one for the rest
    ops_per_leaf = 2

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        alpha: Tunable = 0.5,
        k: int = 6,
        n_sma_threshhold: int = 5,
        betas: Sequence[float] = (0.95, 0.999),
        eps: Tunable = 1e-5,
        weight_decay: Tunable = 0.0,
        amsgrad: bool = True,
        transformer: str = "softplus",
        smooth: Tunable = 50.0,
        grad_transformer: str = "square",
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        if not callable(learning_rate):
            self._check("learning_rate", learning_rate, 0.0, None, "(]")
        self._hyper("alpha", alpha, 0.0, 1.0)
        self._check("k", k, 1)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0, None, "(]")
        self._hyper("weight_decay", weight_decay)
        self._hyper("smooth", smooth)
        self._choice("grad_transformer", grad_transformer, ("square", "abs"))
        self.k, self.n_sma_threshhold, self.amsgrad = int(k), n_sma_threshhold, amsgrad
        self.transformer, self.grad_transformer = transformer, grad_transformer

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.amsgrad:
            state["max_exp_avg_sq"] = self.zeros(parameter)
        state["slow_buffer"] = state_copy(self, parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")
        hp.step_size_lr = hp.step_size * hp.lr
        hp.c1, hp.c2 = hp.one_minus_beta1, 1 - hp.beta2  # F.ema's complements, once per step (mlx_optim.fusion)
        hp.sync = F.every(hp.step, self.k)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        sq = state["exp_avg_sq"]
        g2 = sn_reduce(mx.square(g), sq)
        v = hp.beta2 * sq + hp.c2 * g2  # = F.ema(sq, g2, beta2)
        m = hp.beta1 * state["exp_avg"] + hp.c1 * g
        v = hp.beta2 * v + hp.c2 * (g2 if self.grad_transformer == "square" else sn_reduce(mx.abs(g), sq))
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom_c = self.apply_amsgrad(state, v, "max_exp_avg_sq") if self.amsgrad else v
        denom_c, v = sn_expand(denom_c, p.shape), sn_expand(v, p.shape)
        if self.grad_transformer == "square":
            denom_c = mx.sqrt(denom_c)
        p, _ = self.apply_weight_decay(p, g, decouple=True)
        if self.transformer == "softplus":
            p = p - hp.step_size * m / F.softplus(denom_c, hp.smooth)
        else:
            p = p - hp.step_size_lr * m / (mx.sqrt(v) + hp.eps)
        p, state["slow_buffer"] = lookahead_merge(p, state["slow_buffer"], hp.alpha, hp.sync)
        return p
