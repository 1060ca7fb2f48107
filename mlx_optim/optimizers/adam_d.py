"""Adam variants from pytorch_optimizer (group D).

Lamb, MARS, NovoGrad, QHAdam, StableAdamW, SPAM, StableSPAM, SWATS,
GrokFastAdamW, AdamWSN and Adan, each with the semantics of its
pytorch_optimizer 4.1.0 class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register

# ----------------------------------------------------------------------------- shared pure helpers


def debias_beta(beta, step: mx.array) -> mx.array:
    """pytorch_optimizer's ``debias_beta``: ``(beta^t - beta) / (beta^t - 1)`` (0 at ``t = 1``)."""
    beta_t = mx.power(mx.array(beta, mx.float32), step)
    return (beta_t - beta) / (beta_t - 1.0)


def newton_schulz5(
    g: mx.array,
    steps: int = 5,
    eps: float = 1e-7,
    weights: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
    dtype: mx.Dtype = mx.bfloat16,
) -> mx.array:
    """Quintic Newton-Schulz iteration for the polar factor of a matrix.

    pytorch_optimizer's ``zero_power_via_newton_schulz_5``: the iterate is stored in
    ``dtype`` (bfloat16 like the reference) and each fused step (``mm``/``addmm``) is
    computed in float32 and rounded once, which reproduces torch's CPU result bit for bit.
    """
    f32 = mx.float32
    transpose = g.shape[-2] > g.shape[-1]
    x = (g.T if transpose else g).astype(dtype)
    norm = mx.sqrt(mx.sum(mx.square(x.astype(f32)))).astype(dtype)
    x = (x.astype(f32) / mx.maximum(norm, mx.array(eps).astype(dtype)).astype(f32)).astype(dtype)
    w0, w1, w2 = weights
    for _ in range(steps):
        xf = x.astype(f32)
        a = (xf @ xf.T).astype(dtype).astype(f32)
        b = (w1 * a + w2 * (a @ a)).astype(dtype).astype(f32)
        x = (w0 * xf + b @ xf).astype(dtype)
    return x.T if transpose else x


def closest_smaller_divisor(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is ``<= k`` (pytorch_optimizer's ``closest_smaller_divisor_of_n_to_k``)."""
    if k >= 1 and n % k == 0:
        return k
    if n <= 1 or k <= 1:
        raise ValueError(f"AdamWSN: no subset size <= {k} divides a tensor of {n} elements")
    for i in range(k, 0, -1):
        if n % i == 0:
            return i
    return 1  # pragma: no cover


# ----------------------------------------------------------------------------- Lamb


@register
class Lamb(Optimizer):
    r"""LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning"), pytorch_optimizer semantics.

    Adam moments with a layer-wise trust ratio :math:`\phi = \min(\|p\|, 10) / (\|u\| + \epsilon)`:

    .. math::
        m_t = \beta_1 m_{t-1} + \beta_3 g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        u_t = \frac{m_t}{\sqrt{v_t} + \epsilon} \,(+\, \lambda p),\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\, \phi\, u_t

    with :math:`\beta_3 = 1-\beta_1` when ``grad_averaging``. The second moment is
    not bias corrected; the step size is divided by :math:`1-\beta_1^t` unless
    ``adam_debias``. ``pre_norm`` scales all gradients by
    ``min(1, max_grad_norm / (||g||_global + eps))`` (global reduction in :meth:`prepare`).
    ``rectify`` uses RAdam's rectified step; reference quirk kept: in that mode
    the norm in the trust ratio is that of ``p - step * m / (sqrt(v) + eps)``
    (the would-be new parameter), not of the update. ``adam`` sets the trust
    ratio to 1. Decoupled weight decay (default) is applied before the update.

    Keras-seed defaults differ (catalog App. B): ``weight_decay=0.01`` and
    coupled decay (``decoupled_decay=False``); the seed's ``trust_clip``,
    ``always_adapt`` and ``caution`` are not in the reference.
    """

    name = "lamb"

    zero_compatible = True  # its cross-leaf sums go through global_sum
    # two norms (||p||, ||u||): Square + Sum each; the Adam moments and u in one kernel, the step in another
    ops_per_leaf = 6
    family = "adam"
    reference = "pytorch_optimizer.Lamb"
    clamp = 10.0

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        degenerated_to_sgd: bool = False,
        n_sma_threshold: int = 5,
        grad_averaging: bool = True,
        max_grad_norm: Tunable = 1.0,
        adam: bool = False,
        pre_norm: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("max_grad_norm", max_grad_norm, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.rectify, self.degenerated_to_sgd, self.n_sma_threshold = rectify, degenerated_to_sgd, n_sma_threshold
        self.grad_averaging, self.adam, self.pre_norm = grad_averaging, adam, pre_norm
        self.adam_debias, self.adanorm = adam_debias, adanorm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.beta3 = hp.one_minus_beta1 if self.grad_averaging else 1.0
        step_size = hp.lr
        if self.rectify:
            rt, n_sma = F.rectification(hp.beta2, hp.step, self.n_sma_threshold, hp.one_minus_beta2)
            hp.rectified = n_sma >= self.n_sma_threshold
            step_size = step_size * mx.where(hp.rectified, rt, 1.0 if self.degenerated_to_sgd else -1.0)
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size

    def prepare(self, gradients, parameters) -> None:
        hp = self.hp
        hp.grad_scale = 1.0
        if self.pre_norm and "max_grad_norm" not in self._zero:
            norm = mx.sqrt(self.global_sum(F.sum_of_squares(gradients)))
            hp.grad_scale = mx.minimum(hp.max_grad_norm / (norm + hp.eps), 1.0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.pre_norm:
            g = g * hp.grad_scale
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = hp.beta1 * state["exp_avg"] + hp.beta3 * s_grad
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        adaptive = m / (mx.sqrt(v) + hp.eps)
        if self.rectify:
            direction = mx.where(hp.rectified, adaptive, m)
            norm_of = p - hp.step_size * direction  # reference quirk: the norm of the would-be new parameter
        else:
            direction = adaptive
            if not self.weight_decouple and self.decays():
                direction = direction + hp.weight_decay * p
            norm_of = direction
        trust = 1.0
        if not self.adam:
            w_norm = mx.minimum(F.norm_kd(p), self.clamp)  # kept dims: the trust math fuses into the leaf's kernel
            u_norm = F.norm_kd(norm_of)
            trust = mx.where((w_norm == 0) | (u_norm == 0), 1.0, w_norm / (u_norm + hp.eps))
        new = p - hp.step_size * trust * direction
        if self.rectify:
            new = mx.where(hp.step_size > 0, new, p)
        return new


# ----------------------------------------------------------------------------- MARS


def mars_correction(g: mx.array, last_grad: mx.array, gamma, beta1) -> mx.array:
    """MARS's variance-reduced gradient ``c = g + gamma * beta1 / (1 - beta1) * (g - g_prev)``, norm-clipped to 1."""
    c = (g - last_grad) * (gamma * (beta1 / (1.0 - beta1))) + g
    c_norm = F.norm(c)
    return mx.where(c_norm > 1.0, c / c_norm, c)


@register
class MARS(Optimizer):
    r"""MARS (Yuan et al., 2024, "MARS: Unleashing the Power of Variance Reduction"), pytorch_optimizer semantics.

    For matrices (all tensors with ``optimize_1d``) the gradient is replaced by the
    variance-reduced, norm-clipped :math:`c_t = g_t + \gamma\frac{\beta_1}{1-\beta_1}(g_t - g_{t-1})`
    and fed to an AdamW (``mars_type="adamw"``), Lion (sign of the momentum) or
    Shampoo-like (Newton-Schulz orthogonalised momentum, computed in bfloat16 as the
    reference does) update:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) c_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) c_t^2,\quad
        p_t = p_{t-1} - \eta \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t + 10^{-15}}/\sqrt{1-\beta_2^t} + \epsilon}

    Other tensors use plain AdamW with ``betas_1d``, ``lr_1d`` and ``weight_decay_1d``.
    ``ams_bound`` keeps the running maximum of :math:`v_t`; ``cautious`` masks the
    momentum where it disagrees with the gradient. Reference quirk kept: coupled
    weight decay (``weight_decouple=False``) only alters the stored previous
    gradient (it is added after the update is computed).

    Deviation: ``lr_1d`` is its own tunable; the reference stores ``lr_1d / lr`` at
    construction and multiplies it by the current ``lr``, which differs only when
    the learning rate is changed after construction. Keras-seed default differs:
    ``beta1=0.9`` (reference 0.95) and ``lr_1d_factor`` instead of ``lr_1d``.
    """

    name = "mars"
    family = "adam"
    reference = "pytorch_optimizer.MARS"

    def __init__(
        self,
        learning_rate: Tunable = 3e-3,
        betas: Sequence[float] = (0.95, 0.99),
        gamma: Tunable = 0.025,
        mars_type: str = "adamw",
        optimize_1d: bool = False,
        lr_1d: Tunable = 3e-3,
        betas_1d: Sequence[float] = (0.9, 0.95),
        weight_decay: Tunable = 0.0,
        weight_decay_1d: Tunable = 1e-1,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        cautious: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lr_1d", lr_1d, 0.0)
        self._betas(betas, 2)
        betas_1d = tuple(betas_1d)
        if len(betas_1d) != 2:
            raise ValueError(f"MARS: betas_1d={betas_1d!r} must have 2 values")
        self._hyper("beta1_1d", betas_1d[0], 0.0, 1.0, "[)")
        self._hyper("beta2_1d", betas_1d[1], 0.0, 1.0, "[)")
        self._choice("mars_type", mars_type, ("adamw", "lion", "shampoo"))
        self._hyper("gamma", gamma, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("weight_decay_1d", weight_decay_1d, 0.0)
        self._hyper("eps", eps, 0.0)
        self.mars_type, self.optimize_1d = mars_type, optimize_1d
        self.ams_bound, self.cautious = ams_bound, cautious

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["last_grad"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.bc1_1d = F.bias_correction(hp.beta1_1d, hp.step)
        hp.bc2_sqrt_1d = mx.sqrt(F.bias_correction(hp.beta2_1d, hp.step))

    def _adam_direction(self, m, v, state, bc1, bc2_sqrt):
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        return m / (F.ams_bound_denom(v, self.hp.eps) / bc2_sqrt * bc1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        mixed = self.optimize_1d or g.ndim >= 2
        if mixed:
            beta1, beta2, lr, wd = hp.beta1, hp.beta2, hp.lr, hp.weight_decay
            c = mars_correction(g, state["last_grad"], hp.gamma, beta1)
        else:
            beta1, beta2, lr, wd = hp.beta1_1d, hp.beta2_1d, hp.lr_1d, hp.weight_decay_1d
            c = g
        m = F.lerp(state["exp_avg"], c, 1 - beta1)
        state["exp_avg"] = m
        update = self.apply_cautious(m, g) if self.cautious else m
        if mixed and self.mars_type == "lion":
            update = F.sign(update)
        elif mixed and self.mars_type == "shampoo" and g.ndim >= 2:
            factor = math.sqrt(max(1.0, g.shape[0] / g.shape[1]))
            flat = update.reshape(update.shape[0], -1) * (1.0 / (1.0 - beta1))
            update = (newton_schulz5(flat, eps=hp.eps) * factor).astype(g.dtype).reshape(g.shape)
        else:
            v = beta2 * state["exp_avg_sq"] + (1 - beta2) * mx.square(c)
            state["exp_avg_sq"] = v
            bc1, bc2_sqrt = (hp.bc1, hp.bc2_sqrt) if mixed else (hp.bc1_1d, hp.bc2_sqrt_1d)
            update = self._adam_direction(update, v, state, bc1, bc2_sqrt)
        if self.decay_filter is None or self.decay_filter(self._leaf_path):
            if self.weight_decouple:
                p = F.decoupled_decay(p, lr, wd, fixed=self.fixed_decay)
            else:
                g = F.coupled_decay(g, p, wd)  # quirk: only the stored previous gradient sees it
        state["last_grad"] = g
        return p - lr * update


# ----------------------------------------------------------------------------- NovoGrad


@register
class NovoGrad(Optimizer):
    r"""NovoGrad (Ginsburg et al., 2019), pytorch_optimizer semantics: layer-wise second moments.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\|g_t\|^2 \;(v_1 = \|g_1\|^2),\quad
        \hat g_t = \frac{g_t}{\sqrt{v_t} + \epsilon} \,(+\, \lambda p),\quad
        m_t = \beta_1 m_{t-1} + \hat g_t \;(m_1 = \hat g_1),\quad p_t = p_{t-1} - \eta m_t

    With ``grad_averaging`` the new term is scaled by :math:`1-\beta_1` (not on the
    first step); ``adam_debias`` multiplies the step by :math:`\sqrt{1-\beta_2^t}`.
    This is also the Keras seed's ``NvNovoGrad`` (whose ``amsgrad`` option the
    reference lacks).
    """

    name = "novograd"
    family = "adam"
    # ||g||^2 (Square + Sum + Squeeze); the 0-d EMA of it is a state output of its own shape (own kernel); the step
    ops_per_leaf = 5
    reference = "pytorch_optimizer.NovoGrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.95, 0.98),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        grad_averaging: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.grad_averaging, self.adam_debias = grad_averaging, adam_debias

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grads_ema"] = mx.zeros((), mx.float32)
        state["moments"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) if self.adam_debias else hp.lr

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g_sq = mx.sum(mx.square(g))
        ema = mx.where(hp.first, g_sq, F.lerp(state["grads_ema"], g_sq, hp.one_minus_beta2))
        state["grads_ema"] = ema
        g = g / (mx.sqrt(ema) + hp.eps)
        p, g = self.decay_weights(p, g)
        new_term = g * hp.one_minus_beta1 if self.grad_averaging else g
        m = mx.where(hp.first, g, hp.beta1 * state["moments"] + new_term)
        state["moments"] = m
        return p - hp.step_size * m


# ----------------------------------------------------------------------------- QHAdam


@register
class QHAdam(Optimizer):
    r"""QHAdam (Ma & Yarats, 2019, "Quasi-hyperbolic momentum and Adam"), pytorch_optimizer semantics.

    Bias-corrected moments via running weights :math:`w_t = \beta w_{t-1} + 1`:

    .. math::
        m_t = m_{t-1} + \tfrac{1}{w^{(1)}_t}(g_t - m_{t-1}),\quad
        v_t = v_{t-1} + \tfrac{1}{w^{(2)}_t}(g_t^2 - v_{t-1}),\\
        p_t = p_{t-1} - \eta \frac{\nu_1 m_t + (1-\nu_1) g_t}{\sqrt{\nu_2 v_t + (1-\nu_2) g_t^2} + \epsilon}

    The weights are the same for every tensor, so they are kept once in
    ``state["beta1_weight"]`` / ``state["beta2_weight"]``. The Keras seed calls
    ``nus`` ``Nus2``.
    """

    name = "qhadam"
    family = "adam"
    reference = "pytorch_optimizer.QHAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        nus: Sequence[float] = (1.0, 1.0),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        nus = tuple(nus)
        if len(nus) != 2:
            raise ValueError(f"QHAdam: nus={nus!r} must have 2 values")
        self._hyper("nu1", nus[0], 0.0, 1.0)
        self._hyper("nu2", nus[1], 0.0, 1.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.state["beta1_weight"] = mx.array(0.0, mx.float32)
        self.state["beta2_weight"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        w1 = self.state["beta1_weight"] * hp.beta1 + 1.0
        w2 = self.state["beta2_weight"] * hp.beta2 + 1.0
        self.state["beta1_weight"], self.state["beta2_weight"] = w1, w2
        hp.inv_w1, hp.inv_w2 = 1.0 / w1, 1.0 / w2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        g_sq = mx.square(g)
        m = F.lerp(state["exp_avg"], g, hp.inv_w1)
        v = F.lerp(state["exp_avg_sq"], g_sq, hp.inv_w2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        avg_grad = hp.nu1 * m + hp.one_minus_nu1 * g
        avg_rms = mx.sqrt(hp.nu2 * v + hp.one_minus_nu2 * g_sq) + hp.eps
        return p - hp.lr * avg_grad / avg_rms


# ----------------------------------------------------------------------------- StableAdamW


@register
class StableAdamW(Optimizer):
    r"""StableAdamW (Wortsman et al., 2023), pytorch_optimizer semantics: AdamW with update clipping.

    Moments use the bias-corrected decay rates :math:`\hat\beta_t = \beta\frac{1-\beta^{t-1}}{1-\beta^t}`
    (so no separate bias correction); the learning rate is divided by
    :math:`\rho_t = \max(1, \sqrt{\operatorname{mean}(g_t^2 / \max(v_t, \epsilon^2))})`:

    .. math::
        m_t = \hat\beta_{1,t} m_{t-1} + (1-\hat\beta_{1,t}) g_t,\quad
        v_t = \hat\beta_{2,t} v_{t-1} + (1-\hat\beta_{2,t}) g_t^2,\quad
        p_t = p_{t-1}(1 - \lambda\eta/\rho_t) - \frac{\eta}{\rho_t}\frac{m_t}{\sqrt{v_t} + \epsilon}

    ``kahan_sum`` (default) keeps a float32 Kahan compensation buffer for bf16/fp16
    parameters so that small updates are not lost to rounding (the reference keeps
    it in the parameter's dtype; here all state is float32). ``weight_decouple=False``
    folds an L2 penalty into the gradient instead.
    """

    name = "stableadamw"
    family = "adam"
    # rho's mean (Sum) of g^2 / max(v, eps^2): v (its own kernel, read by both sides), the ratio, Sum, the step
    ops_per_leaf = 4
    reference = "pytorch_optimizer.StableAdamW"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.99),
        kahan_sum: bool = True,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.kahan_sum, self.weight_decouple = kahan_sum, weight_decouple
        self._param_dtype = mx.float32

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.kahan_sum and parameter.dtype in (mx.bfloat16, mx.float16):
            state["kahan_comp"] = mx.zeros(parameter.shape, mx.float32)

    def step_scalars(self, hp) -> None:
        hp.beta1_comp = 1.0 - debias_beta(hp.beta1, hp.step)
        hp.beta2_hat = debias_beta(hp.beta2, hp.step)
        hp.one_minus_beta2_hat = 1 - hp.beta2_hat
        hp.eps_sq = mx.square(hp.eps)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        self._param_dtype = parameter.dtype  # the Kahan sum rounds to the parameter's own dtype
        return super().apply_single(gradient, parameter, state)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if not self.weight_decouple:
            p, g = self.apply_weight_decay(p, g, decouple=False)
        m = F.lerp(state["exp_avg"], g, hp.beta1_comp)
        # g * g (== mx.square(g) bit for bit) here and mx.square(g) in rho: g^2 is recomputed in both kernels, not
        # written to memory as a third one; kept dims: rho's scalar math lands in the leaf's kernel (mlx_optim.fusion)
        v = hp.beta2_hat * state["exp_avg_sq"] + hp.one_minus_beta2_hat * (g * g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        rho = mx.maximum(mx.sqrt(mx.mean(mx.square(g) / mx.maximum(v, hp.eps_sq), keepdims=True)), 1.0)
        lr = hp.lr / rho
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, lr=lr)
        delta = lr * m / (mx.sqrt(v) + hp.eps)
        if "kahan_comp" not in state:
            return p - delta
        comp = state["kahan_comp"] - delta
        new = (p + comp).astype(self._param_dtype).astype(p.dtype)
        state["kahan_comp"] = comp - (new - p)
        return new


# ----------------------------------------------------------------------------- SPAM


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
    r"""SPAM (Huang et al., 2025, "Spike-Aware Adam with Momentum Reset"), pytorch_optimizer semantics.

    Adam with (1) momentum reset every ``update_proj_gap`` steps, followed by a
    cosine warm-up of the step size over ``warmup_epoch`` steps, (2) spike clipping
    :math:`g \leftarrow \operatorname{sign}(g)\sqrt{\theta v}` where :math:`g^2 > \theta v`
    (from step ``grad_accu_steps`` on, and not in the first ``grad_accu_steps``
    steps after a reset) and (3) for ``density < 1`` a random sparse mask on 2-D
    parameters (only masked entries are updated and decayed), redrawn at each reset:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - s_t\,\eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\frac{m_t}{\sqrt{v_t} + \epsilon},\quad
        p_t \leftarrow p_t (1 - \eta\lambda)

    with :math:`s_t = 1 - \text{death rate}` of the warm-up. The moments of masked
    tensors are kept dense (zero outside the mask) instead of compact. Masks are
    random: they are drawn from a key kept in the state (keyword-only ``seed``,
    not in the reference), the first mask with exactly ``int(density * numel)``
    entries like the reference, later ones entry-wise with probability ``density``.
    With the default ``density=1`` no masks are kept and the update is deterministic.
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
        self.state["key"] = mx.random.key(seed)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.use_masks and parameter.ndim == 2:
            key, mask_key, leaf_key = mx.random.split(self.state["key"], 3)
            self.state["key"] = key
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


# ----------------------------------------------------------------------------- StableSPAM


@register
class StableSPAM(Optimizer):
    r"""Stable-SPAM (Huang et al., 2025, "Stable-SPAM: How to Train in 4-Bit More Stably than 16-Bit Adam").

    pytorch_optimizer semantics. Per tensor: adaptive spike clipping against a
    running maximum :math:`\hat M_t` of :math:`\max|g|` (decay ``theta``), then the
    gradient is rescaled to the bias-corrected running norm
    :math:`\hat n_t = \hat m^{\|g\|}_t / (\sqrt{\hat v^{\|g\|}_t} + \epsilon)` (decays ``gamma1``,
    ``gamma2``) and fed to Adam:

    .. math::
        \tilde g = \begin{cases} g\,\hat M_t / \max|g| & |g| > \hat M_t \\ g \end{cases},\quad
        g' = \hat n_t\,\tilde g/\|\tilde g\|,\quad
        p_t = p_{t-1}(1-\eta\lambda) - \frac{\eta}{1-\beta_1^s}\frac{m_s}{\sqrt{v_s}/\sqrt{1-\beta_2^s} + \epsilon}

    The moments are zeroed and their step count :math:`s` restarts every
    ``update_proj_gap`` steps. With ``t_max`` both :math:`\beta_1` and ``gamma1``
    are multiplied by a cosine factor decaying from 1 to ``eta_min`` (the closed
    form of the reference's ``CosineDecay`` as it is called). Tensors whose clipped
    gradient is zero are skipped (only decayed). ``gamma1=-1`` means ``betas[0]``.
    """

    name = "stablespam"
    family = "adam"
    reference = "pytorch_optimizer.StableSPAM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        gamma1: Tunable = 0.7,
        gamma2: Tunable = 0.9,
        theta: Tunable = 0.999,
        t_max: int | None = None,
        eta_min: float = 0.5,
        weight_decay: Tunable = 0.0,
        update_proj_gap: int = 1000,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        betas = tuple(betas)
        self._hyper("gamma1", betas[0] if gamma1 == -1.0 else gamma1)
        self._hyper("gamma2", gamma2)
        self._hyper("theta", theta)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._check("update_proj_gap", update_proj_gap, 0, None, "(]")
        self._hyper("eps", eps, 0.0)
        if t_max is not None:
            self._check("t_max", t_max, 0)
        self.t_max, self.eta_min, self.update_proj_gap = t_max, float(eta_min), int(update_proj_gap)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["m_norm_t"] = mx.zeros((), mx.float32)
        state["v_norm_t"] = mx.zeros((), mx.float32)
        state["m_max_t"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        t, gap = hp.step, self.update_proj_gap
        scale = 1.0
        if self.t_max is not None:
            big_t, lo = self.t_max + 1, self.eta_min
            cosine = lo + (1 - lo) * (1 + mx.cos(math.pi * (t + 1) / big_t)) / (1 + math.cos(math.pi / big_t))
            scale = mx.where(t >= self.t_max, lo, cosine)
        hp.reset = mx.remainder(t, gap) == 0
        s = mx.where(t < gap, t, mx.remainder(t, gap) + 1)  # the moments' step count, restarted at each reset
        hp.beta1_t = hp.beta1 * scale
        hp.step_size = hp.lr / F.bias_correction(hp.beta1_t, s)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2", s))
        hp.theta_t = F.bias_correction(hp.theta, t)
        gamma1 = hp.gamma1 * scale
        hp.norm_weight = 1.0 - gamma1
        hp.norm_bc1 = F.bias_correction(gamma1, t)
        hp.norm_bc2 = F.bias_correction(hp.gamma2, t)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, _ = self.apply_weight_decay(p, g, decouple=True)
        max_grad = mx.max(mx.abs(g))
        m_max = F.lerp(state["m_max_t"], max_grad, 1 - hp.theta)
        state["m_max_t"] = m_max
        m_max_hat = m_max / hp.theta_t
        g = mx.where(mx.abs(g) > m_max_hat, g / max_grad * m_max_hat, g)
        g_norm = F.norm(g)
        active = g_norm > 0
        m_norm = mx.where(active, F.lerp(state["m_norm_t"], g_norm, hp.norm_weight), state["m_norm_t"])
        v_norm = mx.where(active, F.lerp(state["v_norm_t"], mx.square(g_norm), 1 - hp.gamma2), state["v_norm_t"])
        state["m_norm_t"], state["v_norm_t"] = m_norm, v_norm
        c_norm = (m_norm / hp.norm_bc1) / (mx.sqrt(v_norm / hp.norm_bc2) + hp.eps)
        g = g / mx.where(active, g_norm, 1.0) * c_norm
        m0 = mx.where(hp.reset, 0.0, state["exp_avg"])
        v0 = mx.where(hp.reset, 0.0, state["exp_avg_sq"])
        m = mx.where(active, F.lerp(m0, g, 1 - hp.beta1_t), m0)
        v = mx.where(active, hp.beta2 * v0 + hp.one_minus_beta2 * mx.square(g), v0)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        new = p - hp.step_size * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)
        return mx.where(active, new, p)


# ----------------------------------------------------------------------------- SWATS


@register
class SWATS(Optimizer):
    r"""SWATS (Keskar & Socher, 2017, "Switching from Adam to SGD"), pytorch_optimizer semantics.

    Adam steps
    :math:`\delta_t = -\eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\frac{m_t}{\sqrt{v_t + 10^{-15}} + \epsilon}`
    while tracking the projected SGD learning rate

    .. math::
        \gamma_t = \frac{\delta_t^\top\delta_t}{-\delta_t^\top g_t},\quad
        \lambda_t = \beta_2 \lambda_{t-1} + (1-\beta_2)\gamma_t

    per tensor. After the first step on which some tensor has
    :math:`\lambda_t/(1-\beta_2^t) > 0` within relative ``eps`` (and absolute 1e-8)
    of :math:`\gamma_t`, all tensors switch for good to SGD with momentum
    :math:`b_t = \beta_1 b_{t-1} + g_t`, step :math:`-\lambda (1-\beta_1) b_t`
    (plus :math:`\beta_1 b_t` with ``nesterov``), :math:`\lambda` taken from the
    last such tensor. The phase and the SGD rate are global state
    (``state["sgd_phase"]``, ``state["sgd_lr"]``); after the switch, decoupled
    weight decay also uses the SGD rate, as in the reference.
    ``adam_debias`` drops :math:`1-\beta_1^t` from the Adam step (the reference reads
    it only from a parameter group). Keras-seed default differs: ``epsilon=1e-3``.
    """

    name = "swats"
    family = "adam"
    reference = "pytorch_optimizer.SWATS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        nesterov: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.ams_bound, self.nesterov, self.adam_debias = ams_bound, nesterov, adam_debias
        self.state["sgd_phase"] = mx.array(False)
        self.state["sgd_lr"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["exp_avg2"] = mx.zeros((), mx.float32)
        state["momentum_buffer"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.sgd = self.state["sgd_phase"]
        hp.group_lr = mx.where(hp.sgd, self.state["sgd_lr"], hp.lr)
        hp.bc2 = hp.bias_correction("beta2")
        step_size = hp.lr * mx.sqrt(hp.bc2)
        hp.step_size = step_size if self.adam_debias else step_size / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g, lr=hp.group_lr)
        # SGD phase
        buf = hp.beta1 * state["momentum_buffer"] + g
        sgd_update = buf * hp.one_minus_beta1
        if self.nesterov:
            sgd_update = sgd_update + hp.beta1 * buf
        state["momentum_buffer"] = mx.where(hp.sgd, buf, state["momentum_buffer"])
        # Adam phase
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        v_hat = v
        if self.ams_bound:
            v_hat = mx.maximum(state["max_exp_avg_sq"], v)
            state["max_exp_avg_sq"] = mx.where(hp.sgd, state["max_exp_avg_sq"], v_hat)
        perturb = -hp.step_size * m / F.ams_bound_denom(v_hat, hp.eps)
        state["exp_avg"] = mx.where(hp.sgd, state["exp_avg"], m)
        state["exp_avg_sq"] = mx.where(hp.sgd, state["exp_avg_sq"], v)
        # the projected SGD learning rate and the switch decision
        pg = mx.sum(perturb * g)
        valid = (pg != 0) & ~hp.sgd
        scaling = mx.sum(mx.square(perturb)) / mx.where(valid, -pg, 1.0)
        avg = mx.where(valid, F.lerp(state["exp_avg2"], scaling, hp.one_minus_beta2), state["exp_avg2"])
        state["exp_avg2"] = avg
        corrected = avg / hp.bc2
        close = mx.abs(corrected - scaling) <= 1e-8 + hp.eps * mx.abs(scaling)  # torch.allclose(rtol=eps)
        switch = valid & (hp.step > 1) & (corrected > 0) & close
        self.state["sgd_lr"] = mx.where(switch, corrected, self.state["sgd_lr"])
        self.state["sgd_phase"] = self.state["sgd_phase"] | switch
        return mx.where(hp.sgd, p - hp.group_lr * sgd_update, p + perturb)


# ----------------------------------------------------------------------------- GrokFastAdamW


@register
class GrokFastAdamW(Optimizer):
    r"""GrokFast-AdamW (Lee et al., 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients").

    pytorch_optimizer semantics: AdamW on the gradient plus ``grokfast_lamb`` times
    its slow EMA :math:`\mu_t = \alpha\mu_{t-1} + (1-\alpha) g_t` (:math:`\mu_0 = g_1`,
    active after ``grokfast_after_step`` steps):

    .. math::
        \tilde g_t = g_t + \lambda_g \mu_t,\quad
        p_t = p_{t-1} - \frac{\eta'}{1-\beta_1^t}\frac{m_t}{\max(\sqrt{v_t/(1-\beta_2^t)}, \epsilon)}

    with :math:`\eta' = \eta / (1 + \lambda_g)` when ``normalize_lr`` (also used by
    the weight decay, as in the reference). Note the denominator clamps at ``eps``
    instead of adding it.
    """

    name = "grokfastadamw"
    family = "adam"
    reference = "pytorch_optimizer.GrokFastAdamW"
    # the new slow EMA lies more than 11 operations deep below p' (through the amplified gradient and the second
    ops_per_leaf = 2  # moment): mx.compile computes it in a kernel of its own

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        betas: Sequence[float] = (0.9, 0.99),
        grokfast: bool = True,
        grokfast_alpha: Tunable = 0.98,
        grokfast_lamb: Tunable = 2.0,
        grokfast_after_step: int = 0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        normalize_lr: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("grokfast_alpha", grokfast_alpha, 0.0, 1.0, "[)")
        self._hyper("grokfast_lamb", grokfast_lamb)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.grokfast = grokfast and (callable(grokfast_lamb) or grokfast_lamb > 0.0)
        self.normalize_lr = grokfast and normalize_lr
        self.grokfast_after_step = grokfast_after_step

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.grokfast:
            state["grok_exp_avg"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        if self.normalize_lr:
            hp.lr = hp.lr / (1.0 + hp.grokfast_lamb)
        hp.first = hp.step == 1
        hp.grok_on = hp.step > self.grokfast_after_step
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        if self.grokfast:
            hp.grok_weight = hp.one_minus_grokfast_alpha

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g_raw = g
        p, g = self.decay_weights(p, g)
        if self.grokfast:
            mu0 = mx.where(hp.first, g_raw, state["grok_exp_avg"])  # initialised to the first gradient
            mu = F.lerp(mu0, g, hp.grok_weight)
            # where grok_on the new state is mu: the gradient reads it from the new state, which then feeds the
            # update (one kernel fewer under mx.compile, mlx_optim.fusion)
            state["grok_exp_avg"] = mu = mx.where(hp.grok_on, mu, mu0)
            g = mx.where(hp.grok_on, g + hp.grokfast_lamb * mu, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / mx.maximum(mx.sqrt(v) / hp.bc2_sqrt, hp.eps)


# ----------------------------------------------------------------------------- AdamWSN


@register
class AdamWSN(Optimizer):
    r"""AdamW with subset-norm second moments (Nguyen et al., 2024, "Subset-Norm and Subspace-Momentum").

    pytorch_optimizer semantics. With ``sn`` each tensor is viewed as
    ``(numel / k, k)`` and one second moment is kept per row of ``k`` entries (the
    sum of their squared gradients); ``k`` is the largest divisor of ``numel`` not
    above ``subset_size`` (or ``int(sqrt(numel) / |subset_size|)`` when it is negative):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \textstyle\sum_{\text{row}} g_t^2,\quad
        p_t = p_{t-1} - \eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\frac{m_t}{\sqrt{v_t} + \epsilon},\quad
        p_t \leftarrow p_t(1-\eta\lambda)

    Without ``sn`` it is AdamW with the decay applied after the step. Reference quirk
    kept: ``weight_decouple=False`` applies no weight decay at all (the penalty is
    added to the gradient after it was used). ``sn`` is a parameter-group option in
    the reference (default off); the Keras seed's ``AdamWSN`` defaults to ``sn=True``.
    """

    name = "adamwsn"
    family = "adam"
    reference = "pytorch_optimizer.AdamWSN"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        subset_size: int = -1,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        sn: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        if sn and int(subset_size) == 0:
            raise ValueError("AdamWSN: subset_size=0 is not allowed; use a positive size or a negative divisor")
        self.subset_size, self.sn = int(subset_size), sn

    def _subset(self, size: int) -> int:
        k = self.subset_size if self.subset_size > 0 else int(math.sqrt(size) / abs(self.subset_size))
        return closest_smaller_divisor(size, k)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        if self.sn:
            size = parameter.size
            state["exp_avg_sq"] = self.zeros(parameter, (size // self._subset(size), 1))
        else:
            state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        if self.sn:
            rows = state["exp_avg_sq"].shape[0]
            second = mx.sum(mx.square(g.reshape(rows, -1)), axis=1, keepdims=True)
        else:
            second = mx.square(g)
        v = F.lerp(state["exp_avg_sq"], second, hp.one_minus_beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = mx.sqrt(v) + hp.eps
        update = (m.reshape(denom.shape[0], -1) / denom).reshape(p.shape) if self.sn else m / denom
        p = p - hp.step_size * update
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p


# ----------------------------------------------------------------------------- Adan


@register
class Adan(Optimizer):
    r"""Adan (Xie et al., 2022, "Adaptive Nesterov Momentum Algorithm"), pytorch_optimizer semantics.

    With :math:`\Delta_t = g_t - g_{t-1}` (zero on the first step):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad d_t = \beta_2 d_{t-1} + (1-\beta_2)\Delta_t,\\
        n_t = \beta_3 n_{t-1} + (1-\beta_3)(g_t + \beta_2\Delta_t)^2,\quad
        u_t = \frac{m_t/(1-\beta_1^t) + \beta_2 d_t/(1-\beta_2^t)}{\sqrt{n_t/(1-\beta_3^t)} + \epsilon},\\
        p_t = \frac{p_{t-1} - \eta u_t}{1 + \eta\lambda} \quad(\text{or } p_{t-1}(1-\eta\lambda) - \eta u_t
        \text{ with } \texttt{weight\_decouple})

    ``max_grad_norm > 0`` scales all gradients by ``min(1, max_grad_norm / (||g||_global + eps))``
    (global reduction in :meth:`prepare`). ``use_gc`` centralizes the gradient and
    ``adanorm`` rescales the one fed to :math:`m_t`. Reference quirk kept: the
    stored "previous gradient" before the first step is the negated raw gradient
    (before ``maximize`` and centralization), so :math:`\Delta_1` is not zero with
    ``maximize`` or ``use_gc``. Keras-seed ``no_prox``/``cautious`` are not in the reference.
    """

    name = "adan"
    family = "adam"
    reference = "pytorch_optimizer.Adan"
    # the chain to the first-step selection of the previous gradient is more than 11 operations deep from p':
    ops_per_leaf = 2  # mx.compile computes it (and the new previous_grad) in a kernel of its own

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.98, 0.92, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        max_grad_norm: Tunable = 0.0,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        use_gc: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 3)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("max_grad_norm", max_grad_norm, 0.0)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.weight_decouple, self.use_gc, self.adanorm = weight_decouple, use_gc, adanorm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["exp_avg_diff"] = self.zeros(parameter)
        state["previous_grad"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.diff_step_size = hp.lr * hp.beta2 / hp.bias_correction("beta2")
        hp.bc3_sqrt = mx.sqrt(F.bias_correction(hp.beta3, hp.step))
        hp.c3 = 1 - hp.beta3
        if "weight_decay" not in self._zero:
            hp.lr_wd = hp.lr * hp.weight_decay
            hp.shrink, hp.prox = 1 - hp.lr_wd, 1 + hp.lr_wd

    def prepare(self, gradients, parameters) -> None:
        hp = self.hp
        hp.clip = 1.0
        if "max_grad_norm" not in self._zero:
            hp.clip = mx.minimum(hp.max_grad_norm / (F.global_norm(gradients) + hp.eps), 1.0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        clipped = not isinstance(hp.clip, float)  # hp.clip is 1.0 (a no-op) without max_grad_norm
        raw = -g if self.maximize else g
        g = g * hp.clip if clipped else g
        if self.use_gc:
            g = self.apply_gc(g)
        neg = -g  # the new previous_grad
        if self.use_gc:
            first = -hp.clip * raw
        else:  # -clip * raw is exactly -g (g with maximize, where raw = -g): the selection then also computes
            first = g if self.maximize else neg  # the new state, in one kernel (mlx_optim.fusion)
        prev = mx.where(hp.first, first, state["previous_grad"])
        diff = prev + g
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = F.lerp(state["exp_avg"], s_grad, hp.one_minus_beta1)
        d = F.lerp(state["exp_avg_diff"], diff, hp.one_minus_beta2)
        n = hp.beta3 * state["exp_avg_sq"] + hp.c3 * mx.square(hp.beta2 * diff + g)
        state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"] = m, d, n
        state["previous_grad"] = neg
        denom = mx.sqrt(n) / hp.bc3_sqrt + hp.eps
        decay = self.decays()
        if decay and self.weight_decouple:
            p = p * hp.shrink
        p = p - hp.step_size * m / denom - hp.diff_step_size * d / denom
        if decay and not self.weight_decouple:
            p = p / hp.prox
        return p
