"""Adam variants from pytorch_optimizer (group C).

AdEMAMix, SimplifiedAdEMAMix, ADOPT, DiffGrad, EXAdam, FAdam, Grams, Kate,
LaProp and MADGRAD, each with the semantics of its pytorch_optimizer 4.1.0 class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register

# ----------------------------------------------------------------------------- shared pure helpers


# ----------------------------------------------------------------------------- AdEMAMix


@register
class AdEMAMix(Optimizer):
    r"""AdEMAMix (Pagliardini et al., 2024, "The AdEMAMix Optimizer: Better, Faster, Older").

    Adam whose numerator mixes the usual fast EMA with a slow EMA of the gradient:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        s_t = \beta_3(t) s_{t-1} + (1-\beta_3(t)) g_t \\
        p_t = p_{t-1} - \eta \frac{m_t/(1-\beta_1^t) + \alpha(t)\, s_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    With ``t_alpha_beta3`` the mixing weight :math:`\alpha(t)` warms up linearly
    and :math:`\beta_3(t)` in half-life space over that many steps. Options read by
    the reference from ``**kwargs``: ``cautious`` (mask the fast momentum) and
    ``stable_adamw`` (divide the update by the StableAdamW RMS). ``betas[2]`` may be 1.
    The Keras seed spells ``t_alpha_beta3`` as ``T_alpha_beta3``; defaults agree.
    """

    name = "ademamix"
    family = "adam"
    reference = "pytorch_optimizer.AdEMAMix"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999, 0.9999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        alpha: Tunable = 5.0,
        t_alpha_beta3: float | None = None,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        cautious: bool = False,
        stable_adamw: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 3:
            raise ValueError(f"AdEMAMix: betas={betas!r} must have 3 values")
        self._betas(betas[:2], 2)
        self._hyper("beta3", betas[2], 0.0, 1.0, "[]")
        self._hyper("alpha", alpha, 0.0)
        if t_alpha_beta3 is not None:
            self._check("t_alpha_beta3", t_alpha_beta3, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.t_alpha_beta3 = t_alpha_beta3
        self.cautious, self.stable_adamw = cautious, stable_adamw

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["exp_avg_slow"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.alpha_t, hp.beta3_t = F.ademamix_schedules(hp.step, self.t_alpha_beta3, hp.alpha, hp.beta1, hp.beta3)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        slow = F.lerp(state["exp_avg_slow"], g, 1 - hp.beta3_t)
        state["exp_avg"], state["exp_avg_sq"], state["exp_avg_slow"] = m, v, slow
        denom = mx.sqrt(v) / hp.bc2_sqrt + hp.eps
        fast = self.apply_cautious(m, g) if self.cautious else m
        update = (fast / hp.bc1 + hp.alpha_t * slow) / denom
        if self.stable_adamw:
            update = update / F.stable_adamw_rms(g, v)
        return p - hp.lr * update


@register
class SimplifiedAdEMAMix(Optimizer):
    r"""Simplified AdEMAMix (Morwani et al., 2024, "Connections between Schedule-Free Optimizers, AdEMAMix,
    and Accelerated SGD Variants").

    One (theory-style, un-normalized) momentum plus ``alpha`` times the current gradient:

    .. math::
        m_t = \beta_1(t) m_{t-1} + (1-\beta_1(t)) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        c_t = \sqrt{1-\beta_2^t} \\
        p_t = p_{t-1} - \eta \frac{m_t + \alpha g_t}{c_t (\sqrt{v_t} + c_t \epsilon)}

    With ``beta1_warmup`` the momentum :math:`\beta_1(t)` grows from ``min_beta1`` to
    ``betas[0]`` linearly in half-life space. The reference's per-parameter
    ``den_sum`` (:math:`c_t^2`) is one global scalar here; its ``num_sum`` is
    never used and is not kept. Decoupled weight decay by default.
    """

    name = "simplifiedademamix"
    family = "adam"
    reference = "pytorch_optimizer.SimplifiedAdEMAMix"

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        betas: Sequence[float] = (0.99, 0.95),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        alpha: Tunable = 0.0,
        beta1_warmup: int | None = None,
        min_beta1: Tunable = 0.9,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("alpha", alpha, 0.0)
        self._hyper("min_beta1", min_beta1, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.beta1_warmup = beta1_warmup
        self.state["den_sum"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    @staticmethod
    def warmup_beta1(step: mx.array, beta_end, beta_start, warmup: int) -> mx.array:
        """``linear_hl_warmup_scheduler``: interpolate the half-lives of ``beta_start`` and ``beta_end``."""

        def half_life(beta):
            return mx.log(mx.array(0.5, mx.float32)) / mx.log(beta + 1e-8) - 1.0

        a = step / float(warmup)
        t = (1.0 - a) * half_life(beta_start) + a * half_life(beta_end)
        return mx.where(step < warmup, mx.power(mx.array(0.5, mx.float32), 1.0 / (t + 1.0)), beta_end)

    def step_scalars(self, hp) -> None:
        den_sum = hp.beta2 * self.state["den_sum"] + hp.one_minus_beta2
        self.state["den_sum"] = den_sum
        hp.den_sqrt = mx.sqrt(den_sum)
        hp.beta1_t = hp.beta1
        if self.beta1_warmup:
            hp.beta1_t = self.warmup_beta1(hp.step, hp.beta1, hp.min_beta1, self.beta1_warmup)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, 1 - hp.beta1_t)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = mx.sqrt(v) + hp.den_sqrt * hp.eps
        return p - hp.lr * ((m + hp.alpha * g) / denom / hp.den_sqrt)


# ----------------------------------------------------------------------------- ADOPT


def _adopt_clip(step):
    return step**0.25


@register
class ADOPT(Optimizer):
    r"""ADOPT (Taniguchi et al., 2024, "ADOPT: Modified Adam Can Converge with Any beta2").

    The gradient is normalized by the *previous* second moment (so the current
    gradient does not enter its own denominator), clipped, and then averaged:

    .. math::
        \tilde g_t = \operatorname{clip}\!\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c(t)\right),\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\tilde g_t,\quad p_t = p_{t-1} - \eta m_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    The first step only sets :math:`v_1 = g_1^2` (and applies decoupled weight
    decay). ``clip_lambda`` maps the float32 step array ``t`` (1 on the first
    update, the same index as pytorch_optimizer, so the clip is not one step
    late) to the bound :math:`c(t)`; default :math:`t^{1/4}`; ``None`` disables
    clipping. Options ``cautious`` and ``stable_adamw`` as in the reference.
    The Keras seed (after timm) uses ``clip_exp=0.333`` (:math:`c(t)=t^{0.333}`),
    here pass ``clip_lambda=lambda t: t ** 0.333``.
    """

    name = "adopt"
    family = "adam"
    reference = "pytorch_optimizer.ADOPT"
    ops_per_leaf = 2  # v' is not an input of p' (p' is normalized by the old v): mx.compile gives it its own kernel

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.9999),
        clip_lambda: Callable[[mx.array], mx.array] | None = _adopt_clip,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        cautious: bool = False,
        stable_adamw: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        if clip_lambda is not None and not callable(clip_lambda):
            raise ValueError(f"ADOPT: clip_lambda={clip_lambda!r} must be a callable or None")
        self.clip_lambda = clip_lambda
        self.cautious, self.stable_adamw = cautious, stable_adamw

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        if self.clip_lambda is not None:
            hp.clip = mx.array(self.clip_lambda(hp.step), mx.float32)
            hp.neg_clip = -hp.clip

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        normed = g / mx.maximum(mx.sqrt(v), hp.eps)
        if self.clip_lambda is not None:
            normed = mx.clip(normed, hp.neg_clip, hp.clip)
        # The update reads the new state (m_new but on the first step, whose update is discarded) so that they share
        # a kernel, and m_new is beta1 m + (1 - beta1) normed, not lerp's m + (1 - beta1) (normed - m) (a rounding
        # apart): one operation shallower, so that mx.compile fuses all but the new v into one kernel (mlx_optim.fusion)
        m = mx.where(hp.first, m, hp.beta1 * m + hp.one_minus_beta1 * normed)
        state["exp_avg"] = m
        update = self.apply_cautious(m, normed) if self.cautious else m
        if self.stable_adamw:
            update = update / F.stable_adamw_rms(g, v)
        state["exp_avg_sq"] = mx.where(hp.first, v + mx.square(g), hp.beta2 * v + hp.one_minus_beta2 * mx.square(g))
        return mx.where(hp.first, p, p - hp.lr * update)


# ----------------------------------------------------------------------------- DiffGrad


@register
class DiffGrad(Optimizer):
    r"""diffGrad (Dubey et al., 2019, "diffGrad: An Optimization Method for Convolutional Neural Networks").

    Adam whose first moment is damped per coordinate by the friction coefficient
    :math:`\xi_t = \sigma(|g_{t-1} - g_t|)` (sigmoid of the gradient change):

    .. math::
        p_t = p_{t-1} - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
              \frac{\xi_t\, m_t}{\sqrt{v_t + 10^{-15}} + \epsilon}

    ``rectify`` uses RAdam's rectified step size (below ``n_sma_threshold`` the
    step is momentum SGD with ``degenerated_to_sgd``, else skipped); ``ams_bound``
    uses the running maximum of :math:`v_t`; ``adam_debias`` drops the first-moment
    correction; ``adanorm`` rescales the gradient fed to the first moment.
    Decoupled weight decay by default. The Keras seed's defaults agree.
    """

    name = "diffgrad"
    family = "adam"
    reference = "pytorch_optimizer.DiffGrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = True,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
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
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.rectify, self.n_sma_threshold, self.degenerated_to_sgd = rectify, n_sma_threshold, degenerated_to_sgd
        self.ams_bound, self.adam_debias, self.adanorm = ams_bound, adam_debias, adanorm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["previous_grad"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        if self.rectify:
            rt, n_sma = F.rectification(hp.beta2, hp.step, self.n_sma_threshold, hp.one_minus_beta2)
            hp.rectified = n_sma >= self.n_sma_threshold
            step_size = hp.lr * mx.where(hp.rectified, rt, 1.0 if self.degenerated_to_sgd else -1.0)
        else:
            step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2"))
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = F.lerp(state["exp_avg"], s_grad, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = F.ams_bound_denom(self.apply_amsgrad(state, v) if self.ams_bound else v, hp.eps)
        dfc = mx.sigmoid(mx.abs(state["previous_grad"] - g)) * m
        state["previous_grad"] = g
        adaptive = p - hp.step_size * dfc / denom
        if not self.rectify:
            return adaptive
        return mx.where(hp.rectified, adaptive, mx.where(hp.step_size > 0, p - hp.step_size * m, p))


# ----------------------------------------------------------------------------- EXAdam


def exadam_update(g, m, v, *, beta1_t, beta2_t, bc1, bc2, eps) -> tuple[mx.array, mx.array]:
    """EXAdam's direction as ``(numerator, denominator)``: cross-moment corrected moments and the
    gradient-accelerated numerator."""
    d1 = 1.0 + v / (v + eps) * beta2_t
    m_sq = mx.square(m)
    d2 = 1.0 + m_sq / (m_sq + eps) * beta1_t
    numerator = d1 * (m + g) / bc1  # the reference's m / bc1 * d1 + d1 * (g / bc1) up to rounding: 2 divisions fewer
    return numerator, mx.sqrt(d2 * (v / bc2)) + eps


@register
class EXAdam(Optimizer):
    r"""EXAdam (Adly, 2024, "EXAdam: The Power of Adaptive Cross-Moments").

    Adam with cross-moment bias corrections and a gradient-accelerated numerator:

    .. math::
        d_1 = 1 + \beta_2^t \frac{v_t}{v_t+\epsilon},\quad d_2 = 1 + \beta_1^t \frac{m_t^2}{m_t^2+\epsilon},\quad
        \hat m_t = \frac{m_t d_1}{1-\beta_1^t},\quad \hat v_t = \frac{v_t d_2}{1-\beta_2^t} \\
        p_t = p_{t-1} - \eta \frac{\hat m_t + d_1 g_t/(1-\beta_1^t)}{\sqrt{\hat v_t} + \epsilon}

    As in the reference the learning rate is not scaled by the paper's
    :math:`\sqrt{\log t}` schedule. Decoupled weight decay by default.
    """

    name = "exadam"
    family = "adam"
    reference = "pytorch_optimizer.EXAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")
        hp.beta1_t, hp.beta2_t = 1.0 - hp.bc1, 1.0 - hp.bc2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        numerator, denom = exadam_update(
            g, m, v, beta1_t=hp.beta1_t, beta2_t=hp.beta2_t, bc1=hp.bc1, bc2=hp.bc2, eps=hp.eps
        )
        # lr / denom first (not lr * (numerator / denom), a rounding apart): the DFS of mx.compile then reaches m
        # through the denominator's m^2 before the numerator, so m joins the update's kernel (mlx_optim.fusion)
        return p - (hp.lr / denom) * numerator


# ----------------------------------------------------------------------------- FAdam


def clip_rms(x: mx.array, clip) -> mx.array:
    """Scale ``x`` down so that its RMS is at most ``clip``."""
    return x / mx.maximum(F.rms(x) / clip, 1.0)


@register
class FAdam(Optimizer):
    r"""FAdam (Hwang, 2024, "FAdam: Adam is a natural gradient optimizer using diagonal empirical Fisher
    information").

    .. math::
        f_t = \hat\beta_2(t) f_{t-1} + (1-\hat\beta_2(t)) g_t^2,\quad
        d_t = f_t^{\,p} + \min(\epsilon, \epsilon_2 \operatorname{RMS}(g_t))^{2p} \\
        m_t = \beta_1 m_{t-1} + (1-\beta_1) \operatorname{clip}_{\mathrm{RMS}}(g_t / d_t),\quad
        p_t = p_{t-1} - \eta\,(m_t + \lambda \operatorname{clip}_{\mathrm{RMS}}(p_{t-1}/d_t))

    :math:`\hat\beta_2(t) = \beta_2 (1-\beta_2^{t-1})/(1-\beta_2^t)` is the
    bias-corrected Fisher decay; ``clip`` caps the RMS of the natural gradient
    and of the preconditioned weight decay (default ``weight_decay=0.1``).
    The reference's ``momentum_dtype`` / ``fim_dtype`` are covered by ``state_dtype``
    (both default to float32 there, as here for low-precision parameters).
    """

    name = "fadam"
    family = "adam"
    reference = "pytorch_optimizer.FAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.1,
        clip: Tunable = 1.0,
        p: Tunable = 0.5,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        eps_2: Tunable = 0.01,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("clip", clip, 0.0, None, "(]")
        self._hyper("p", p, 0.0, None, "(]")
        self._hyper("eps", eps, 0.0)
        self._hyper("eps_2", eps_2, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum"] = self.zeros(parameter)
        state["fim"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        # debias_beta(beta2, t) = beta2 (1 - beta2^(t-1)) / (1 - beta2^t), 0 on the first step
        hp.beta2_t = hp.beta2 * hp.bias_correction("beta2", hp.step - 1) / hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        fim = hp.beta2_t * state["fim"] + (1 - hp.beta2_t) * mx.square(g)
        state["fim"] = fim
        rms_grad = F.rms(g)
        scaled_eps = hp.eps_2 * rms_grad
        eps_power = mx.where(
            (rms_grad > 0) & (scaled_eps < hp.eps), mx.power(scaled_eps, 2 * hp.p), mx.power(hp.eps, 2 * hp.p)
        )
        fim_base = mx.power(fim, hp.p) + eps_power
        m = F.lerp(state["momentum"], clip_rms(g / fim_base, hp.clip), hp.one_minus_beta1)
        state["momentum"] = m
        update = m
        if self.decays():
            update = hp.weight_decay * clip_rms(p / fim_base, hp.clip) + m
        return p - hp.lr * update


# ----------------------------------------------------------------------------- Grams


@register
class Grams(Optimizer):
    r"""Grams (Cao et al., 2024, "Grams: Gradient Descent with Adaptive Momentum Scaling").

    The magnitude of the Adam update with the sign of the current gradient:

    .. math::
        u_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon},\quad
        p_t = p_{t-1} - \eta\, |u_t| \operatorname{sign}(g_t)

    Decoupled weight decay (not lr-free) is applied after the update is formed.
    Reference quirk kept for parity: with ``weight_decouple=False`` the L2 term is
    added to the gradient *after* it was used, so no weight decay happens at all.
    """

    name = "grams"
    family = "adam"
    reference = "pytorch_optimizer.Grams"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        update = mx.abs(m / hp.bc1 / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)) * F.sign(g)
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True)
        return p - hp.lr * update


# ----------------------------------------------------------------------------- Kate


@register
class Kate(Optimizer):
    r"""KATE (Choudhury et al., 2024, "Remove that Square Root: A New Efficient Scale-Invariant Version of
    AdaGrad").

    .. math::
        b_t^2 = b_{t-1}^2 + g_t^2 + \epsilon,\quad
        m_t^2 = m_{t-1}^2 + \delta g_t^2 + g_t^2 / b_t^2,\quad
        p_t = p_{t-1} - \eta \frac{m_t g_t}{b_t^2}

    The state keeps :math:`m_t` and :math:`b_t` (not their squares), as the
    reference does. Decoupled weight decay by default.
    """

    name = "kate"
    family = "adaptive"
    reference = "pytorch_optimizer.Kate"
    # b' = sqrt(b^2) is not an input of p' (p' divides by b^2 itself), so mx.compile gives b' its own kernel and
    # materializes b^2 and g^2, each read by two kernels; only recomputing them would fuse further (mlx_optim.fusion)
    ops_per_leaf = 4

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        delta: Tunable = 0.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("delta", delta, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["m"] = self.zeros(parameter)
        state["b"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        g_sq = mx.square(g)
        b_sq = mx.square(state["b"]) + g_sq + hp.eps
        m = mx.sqrt(mx.square(state["m"]) + hp.delta * g_sq + g_sq / b_sq)
        state["m"], state["b"] = m, mx.sqrt(b_sq)
        return p - hp.lr * (m * g / b_sq)


# ----------------------------------------------------------------------------- LaProp


@register
class LaProp(Optimizer):
    r"""LaProp (Ziyin et al., 2020, "LaProp: Separating Momentum and Adaptivity in Adam").

    Momentum is taken of the *preconditioned* gradient (RMSprop step first, then momentum):

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,\eta_t \frac{g_t}{(\sqrt{v_t + 10^{-15}} + \epsilon)/\sqrt{1-\beta_2^t}} \\
        p_t = p_{t-1} - \frac{\eta_t}{\bar\eta_t} m_t,\quad \bar\eta_t = \beta_1\bar\eta_{t-1} + (1-\beta_1)\eta_t

    :math:`\bar\eta_t` (an EMA of the learning rate, ``state["exp_avg_lr_1"]``)
    is the first-moment bias correction, exact also under lr schedules. ``centered``
    subtracts the squared gradient mean from :math:`v_t` after
    ``steps_before_using_centered`` steps; ``ams_bound`` uses the running maximum;
    ``cautious`` masks the momentum. Decoupled weight decay is applied after the
    update. Reference quirk kept: with ``weight_decouple=False`` the L2 term is added
    to the gradient after it was used, so no weight decay happens. The Keras seed
    spells ``ams_bound`` as ``amsgrad``.
    """

    name = "laprop"
    family = "adam"
    reference = "pytorch_optimizer.LaProp"

    def __init__(
        self,
        learning_rate: Tunable = 4e-4,
        betas: Sequence[float] = (0.9, 0.999),
        centered: bool = False,
        steps_before_using_centered: int = 10,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-15,
        maximize: bool = False,
        *,
        cautious: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.centered, self.steps_before_using_centered = centered, steps_before_using_centered
        self.ams_bound, self.cautious = ams_bound, cautious
        self.state["exp_avg_lr_1"] = mx.array(0.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.centered:
            state["exp_mean_avg_beta2"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        avg_lr = hp.beta1 * self.state["exp_avg_lr_1"] + hp.one_minus_beta1 * hp.lr
        self.state["exp_avg_lr_1"] = avg_lr
        hp.step_size = mx.where(hp.lr != 0, hp.lr / avg_lr, 1.0)
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.use_centered = hp.step > self.steps_before_using_centered
        # (1 - beta1) lr * (g / (denom / bc2_sqrt)) as (1 - beta1) lr bc2_sqrt * (g / denom): a rounding apart,
        # one operation shallower, so that mx.compile fuses the whole update into one kernel (mlx_optim.fusion)
        hp.m_scale = hp.one_minus_beta1 * hp.lr * hp.bc2_sqrt

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg_sq"] = v
        second = v
        if self.centered:
            mean = F.lerp(state["exp_mean_avg_beta2"], g, hp.one_minus_beta2)
            state["exp_mean_avg_beta2"] = mean
            second = mx.where(hp.use_centered, v - mx.square(mean), v)
        if self.ams_bound:
            second = self.apply_amsgrad(state, second)
        m = hp.beta1 * state["exp_avg"] + hp.m_scale * (g / F.ams_bound_denom(second, hp.eps))
        state["exp_avg"] = m
        update = self.apply_cautious(m, g) if self.cautious else m
        p = p - hp.step_size * update
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p


# ----------------------------------------------------------------------------- MADGRAD


def madgrad_zero(eps) -> mx.array:
    """The ``grad_sum_sq`` value whose :func:`madgrad_rms` is zero: 0 when ``eps == 0``, else NaN (none is)."""
    return mx.where(eps == 0, 0.0, mx.nan)


def madgrad_rms(grad_sum_sq: mx.array, eps, zero) -> mx.array:
    """MADGRAD's cube-root denominator; zero entries (possible only with ``eps=0``) become inactive (inf).

    ``zero`` is :func:`madgrad_zero` of ``eps``: ``grad_sum_sq == zero`` is ``r == 0`` exactly (``r`` is at
    least ``eps`` unless NaN, and the cube root of a non-negative float32 is 0 only at 0), one operation
    shallower, which lets ``mx.compile`` fuse the update into one kernel (mlx_optim.fusion).
    """
    r = mx.power(grad_sum_sq, 1.0 / 3.0) + eps
    return mx.where(grad_sum_sq == zero, mx.inf, r)


@register
class MADGRAD(Optimizer):
    r"""MADGRAD (Defazio & Jelassi, 2021, "Adaptivity without Compromise: A Momentumized, Adaptive, Dual
    Averaged Gradient Method for Stochastic Optimization").

    Dual averaging with a cube-root AdaGrad denominator, anchored at the initial
    parameters :math:`x_0` (kept in ``state["x0"]``), plus momentum by averaging:

    .. math::
        \lambda_t = (\eta+\epsilon)\sqrt{t},\quad s_t = s_{t-1} + \lambda_t g_t,\quad
        \nu_t = \nu_{t-1} + \lambda_t g_t^2 \\
        z_t = x_0 - \frac{s_t}{\nu_t^{1/3} + \epsilon},\quad p_t = \mu\, p_{t-1} + (1-\mu) z_t

    With ``momentum=0`` there is no ``x0`` state: :math:`x_0` is recovered from the
    current iterate as the reference does. ``weight_decouple`` subtracts
    :math:`(\eta+\epsilon)\lambda p_{t-1}` after the step, else L2 is added to the
    gradient. The Keras seed defaults to ``learning_rate=1e-2``; the reference (and
    this class) to 1e-3.
    """

    name = "madgrad"
    family = "adaptive"
    reference = "pytorch_optimizer.MADGRAD"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grad_sum_sq"] = self.zeros(parameter)
        state["s"] = self.zeros(parameter)
        if self.use_momentum:
            state["x0"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def step_scalars(self, hp) -> None:
        hp.lr_eps = mx.where(hp.lr != 0, hp.lr + hp.eps, 0.0)
        hp.lamb = hp.lr_eps * mx.sqrt(hp.step)
        hp.rms_zero = madgrad_zero(hp.eps)
        hp.c_mom = hp.one_minus_momentum
        hp.wd_step = hp.lr_eps * hp.weight_decay

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if not self.weight_decouple:
            p, g = self.apply_weight_decay(p, g, decouple=False)
        if self.use_momentum:
            x0 = state["x0"]
        else:
            x0 = p + state["s"] / madgrad_rms(state["grad_sum_sq"], hp.eps, hp.rms_zero)
        grad_sum_sq = state["grad_sum_sq"] + hp.lamb * mx.square(g)
        s = state["s"] + hp.lamb * g
        state["grad_sum_sq"], state["s"] = grad_sum_sq, s
        z = x0 - s / madgrad_rms(grad_sum_sq, hp.eps, hp.rms_zero)
        new = F.lerp(p, z, hp.c_mom) if self.use_momentum else z
        if self.weight_decouple and self.decays():
            new = new - hp.wd_step * p
        return new
