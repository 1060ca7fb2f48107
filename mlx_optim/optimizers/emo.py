"""The Emo family (EmoNavi, EmoLynx, EmoFact, EmoNeco, EmoZeal): steps scaled by the trend of the loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.docargs import fill_args
from mlx_optim.functional.elementwise import loss_scalar
from mlx_optim.functional.subset_norm import sn_expand, sn_reduce
from mlx_optim.registry import register


def emo_scalar(short: mx.array, long: mx.array) -> mx.array:
    """pytorch_optimizer 4.1.0 ``compute_scalar``: ``tanh((long - short) / max(long, 1e-5))``.

    The reference chooses between ``diff / max(long, 1e-5)`` and ``diff / max(medium, 1e-5)``
    by comparing ``|diff / m| * m < |diff / l| * l``; both sides equal ``|diff|``, so the
    choice is decided by float64 round-off alone. We take the exact-arithmetic branch
    (always the ``long`` one), which makes the medium-term EMA unused.
    """
    return mx.tanh((long - short) / mx.maximum(long, 1e-5))


def emo_drive(scalar: mx.array, use_shadow: bool) -> tuple[mx.array, mx.array, mx.array]:
    """pytorch_optimizer 4.1.0 ``get_emo_drive``: ``(emo_drive, ratio, trust)`` from the scalar.

    ``trust = sign(s) (1 - |s|)``; the step multiplier is ``8 |trust| (1 + 0.1 trust)`` for
    ``0.25 < |s| < 0.5``, ``1 - |s|`` for ``|s| > 0.75`` and 1 otherwise; the shadow ratio is
    ``1 - |s|`` for ``|s| > 0.625`` (0 without ``use_shadow``).
    """
    a = mx.abs(scalar)
    trust = mx.where(scalar < 0, a - 1.0, 1.0 - a)
    drive = mx.where(
        (a > 0.25) & (a < 0.5),
        8.0 * mx.abs(trust) * (1.0 + 0.1 * trust),
        mx.where(a > 0.75, 1.0 - a, 1.0),
    )
    ratio = mx.where(a > 0.625, 1.0 - a, 0.0) if use_shadow else mx.zeros((), mx.float32)
    return drive, ratio, trust


def emo_shadow(p, shadow, ratio, trust_abs, shadow_weight, update_shadow: bool):
    """The shadow step of pytorch_optimizer 4.1.0. Returns ``(p, shadow)``.

    Active (``ratio > 0``): ``p <- p (1 - ratio) + |trust| shadow`` and, with ``update_shadow``,
    ``shadow <- lerp(shadow, p, shadow_weight)``. Otherwise ``shadow <- lerp(shadow, p, 0.1 |trust|)``.
    """
    active = ratio > 0.0
    mixed = p * (1.0 - ratio) + shadow * trust_abs
    shadow_active = F.lerp(shadow, mixed, shadow_weight) if update_shadow else shadow
    new_shadow = mx.where(active, shadow_active, F.lerp(shadow, p, 0.1 * trust_abs))
    return mx.where(active, mixed, p), new_shadow


@register
class EmoNavi(Optimizer):
    r"""EmoNavi: Adam-style steps scaled by the trend of the loss, with an optional shadow copy of the parameters.

    Three EMAs of the loss :math:`L_t` (short 0.3, medium 0.05, long 0.01; initialised with
    the first loss) give a bounded trend scalar :math:`s_t = \tanh((\ell_t - \sigma_t)/\max(\ell_t, 10^{-5}))`
    (:math:`\sigma` short, :math:`\ell` long EMA), from which a step multiplier :math:`d_t`
    and a shadow ratio :math:`r_t` follow (see :func:`emo_drive`). Per parameter:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \eta\, d_t \frac{m_t}{\sqrt{v_t} + \epsilon}

    (no bias correction). With ``use_shadow``, before the step the parameters are pulled towards a
    shadow copy when :math:`r_t > 0` (:math:`p \leftarrow (1-r_t) p + r_t s`) and the shadow follows
    the parameters (see :func:`emo_shadow`). Weight decay is decoupled by default. It needs the loss:
    call ``opt.update(model, grads, loss=loss)`` or ``opt.step_with(model, loss_and_grad_fn, *batch)``.

    Reference: ``pytorch_optimizer.EmoNavi`` (from muooon's EmoNavi; no paper), same keywords and defaults. Its
    ``compute_scalar`` breaks a tie between two mathematically equal quantities by float64 round-off; this
    class takes the exact-arithmetic branch (see :func:`emo_scalar`), so the medium-term EMA is unused.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        use_shadow: Keep a shadow copy of the parameters and blend towards it when the loss trend is extreme.
            Default ``False``.
        shadow_weight: Rate in [0, 1) at which the shadow follows the parameters on active shadow steps.
            Default ``0.05``.
        weight_decay: Weight decay coefficient (>= 0). Default ``1e-2``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "emonavi"
    family = "adam"
    reference = "pytorch_optimizer.EmoNavi"
    needs_loss = True
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: sn hook (vectors only in EmoFact/EmoZeal)
    update_shadow_when_active = True
    loss_ema_rates = {"short": 0.3, "medium": 0.05, "long": 0.01}  # the loss EMAs (global state) and their rates

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        use_shadow: bool = False,
        shadow_weight: Tunable = 0.05,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("shadow_weight", shadow_weight, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.use_shadow = use_shadow
        self._init_loss_state()

    # --- the loss-driven scalars (global state)
    def _init_loss_state(self) -> None:
        for term in self.loss_ema_rates:
            self.globals[f"loss_ema_{term}"] = mx.zeros((), mx.float32)

    def _update_loss_emas(self, hp) -> dict[str, mx.array]:
        """``ema <- rate * L + (1 - rate) * ema`` for each term of :attr:`loss_ema_rates`, the first step starting
        from ``L``."""
        loss = loss_scalar(hp)
        first = hp.step == 1
        out = {}
        for term, rate in self.loss_ema_rates.items():
            key = f"loss_ema_{term}"
            prev = mx.where(first, loss, self.globals[key])
            out[term] = self.globals[key] = rate * loss + (1.0 - rate) * prev
        return out

    def step_scalars(self, hp) -> None:
        ema = self._update_loss_emas(hp)
        hp.scalar = emo_scalar(ema["short"], ema["long"])
        hp.emo_drive, hp.ratio, hp.trust = emo_drive(hp.scalar, self.use_shadow)
        hp.step_lr = hp.lr * hp.emo_drive

    # --- per parameter
    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.use_shadow:
            state["shadow"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        self.init_moments(parameter, state)

    def init_moments(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        if self.use_shadow:
            p, state["shadow"] = emo_shadow(
                p, state["shadow"], hp.ratio, mx.abs(hp.trust), hp.shadow_weight, self.update_shadow_when_active
            )
        return p - hp.step_lr * self.direction(g, state)

    def direction(self, g: mx.array, state: dict) -> mx.array:
        """EmoNavi: ``m / (sqrt(v) + eps)`` without bias correction."""
        hp = self.hp
        state["exp_avg"] = m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = state["exp_avg_sq"]
        state["exp_avg_sq"] = v = hp.beta2 * v + hp.one_minus_beta2 * sn_reduce(mx.square(g), v)
        return m / (mx.sqrt(sn_expand(v, g.shape)) + hp.eps)


_EMO_ARGS: dict[str, str] = {
    "learning_rate": r"Step size :math:`\eta`: a float or a schedule (a callable of the step).",
    "use_shadow": "Keep a shadow copy of the parameters and blend towards it when the loss trend is extreme.",
    "shadow_weight": r"Rate :math:`w` in [0, 1) at which the shadow follows the parameters.",
    "weight_decay": "Weight decay coefficient (>= 0).",
    "weight_decouple": "Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added to the "
    "gradient.",
    "fixed_decay": "With decoupled decay, do not scale it by the learning rate.",
    "eps": r":math:`\epsilon` (>= 0) added to the denominator.",
    "maximize": "Maximize the objective instead of minimizing it (the gradient is negated).",
    "state_dtype": "dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the "
    "parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.",
}
"""``Args:`` text EmoLynx, EmoFact, EmoNeco and EmoZeal share (:func:`mlx_optim.docargs.fill_args`)."""
_emo_args = fill_args(_EMO_ARGS)


@register
@_emo_args
class EmoLynx(EmoNavi):
    r"""EmoLynx: Lion-style sign steps with EmoNavi's loss-driven step multiplier and shadow.

    .. math::
        u_t = \operatorname{sign}((1-\beta_1) g_t + \beta_1 m_{t-1}),\quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t,\quad p_t = p_{t-1} - \eta\, d_t u_t

    The loss scalars and the shadow step are EmoNavi's (:class:`EmoNavi`), except that the
    shadow is not updated on an active shadow step, as in the reference. It needs the loss (see
    :class:`EmoNavi`).

    Reference: ``pytorch_optimizer.EmoLynx`` (no paper), same keywords and defaults.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): the interpolation factor of the sign direction and
            the momentum's decay rate. Default ``(0.9, 0.99)``.
        shadow_weight: Rate in [0, 1) of the shadow's update; unused, since EmoLynx does not update the shadow on
            active shadow steps. Default ``0.05``.
    """

    name = "emolynx"
    family = "sign"
    reference = "pytorch_optimizer.EmoLynx"
    update_shadow_when_active = False
    # m' is not an input of p' (the sign interpolates with the old m, with another beta), so mx.compile gives
    ops_per_leaf = 2  # each its own kernel

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.99),
        use_shadow: bool = False,
        shadow_weight: Tunable = 0.05,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate,
            betas,
            use_shadow,
            shadow_weight,
            weight_decay,
            weight_decouple,
            fixed_decay,
            eps,
            maximize,
            state_dtype=state_dtype,
        )

    def init_moments(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)

    def direction(self, g: mx.array, state: dict) -> mx.array:
        hp = self.hp
        u = F.sign(g * hp.one_minus_beta1 + hp.beta1 * state["exp_avg"])
        state["exp_avg"] = F.lerp(state["exp_avg"], g, hp.one_minus_beta2)
        return u


def factored_rms(g: mx.array, r: mx.array, c: mx.array, beta: Any, eps: Any) -> tuple[mx.array, mx.array, mx.array]:
    """EmoFact's factored second moment for ``ndim >= 2``. Returns ``(denominator, r, c)``.

    Row and column RMS (``sqrt(mean(g^2) + eps)`` over all axes but the first, and over the
    first axis) are averaged with ``beta``; the denominator is ``sqrt(r c) + eps``.
    """
    g2 = mx.square(g)
    r_sq = mx.sqrt(mx.mean(g2, axis=tuple(range(1, g.ndim)), keepdims=True) + eps)
    c_sq = mx.sqrt(mx.mean(g2, axis=0, keepdims=True) + eps)
    r, c = F.lerp(r, r_sq, 1.0 - beta), F.lerp(c, c_sq, 1.0 - beta)
    return mx.sqrt(r * c) + eps, r, c


@register
@_emo_args
class EmoFact(EmoLynx):
    r"""EmoFact: sign of an Adafactor-style factored scaling of the gradient, with EmoNavi's loss-driven multiplier.

    For tensors with ``ndim >= 2`` the row/column RMS of the gradient are averaged with
    :math:`\beta_1` (see :func:`factored_rms`); vectors keep Adam's :math:`m, v` (no bias
    correction). The update is the *sign* of the scaled gradient:

    .. math::
        u_t = \operatorname{sign}\Big(\frac{g_t}{\sqrt{R_t C_t} + \epsilon}\Big)\ (\text{ndim} \ge 2),\quad
        u_t = \operatorname{sign}\Big(\frac{m_t}{\sqrt{v_t} + \epsilon}\Big)\ (\text{vectors}),\quad
        p_t = p_{t-1} - \eta\, d_t u_t

    Loss scalars and shadow as in :class:`EmoLynx`. It needs the loss (see :class:`EmoNavi`).

    Reference: ``pytorch_optimizer.EmoFact`` (no paper), same keywords and defaults.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the factored RMS (and of the vectors'
            first moment) and of the vectors' second moment. Default ``(0.9, 0.999)``.
        shadow_weight: Rate in [0, 1) of the shadow's update; unused, since the shadow is not updated on active
            shadow steps (as in :class:`EmoLynx`). Default ``0.05``.
    """

    name = "emofact"
    family = "memory-efficient"
    reference = "pytorch_optimizer.EmoFact"
    __init__ = EmoNavi.__init__  # EmoNavi's keywords and defaults (EmoLynx's but for betas)

    def init_moments(self, parameter: mx.array, state: dict) -> None:
        if parameter.ndim >= 2:
            shape = parameter.shape
            state["exp_avg_r"] = self.zeros(parameter, (shape[0],) + (1,) * (len(shape) - 1))
            state["exp_avg_c"] = self.zeros(parameter, (1, *shape[1:]))
        else:
            EmoNavi.init_moments(self, parameter, state)

    def direction(self, g: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if g.ndim >= 2:
            denom, state["exp_avg_r"], state["exp_avg_c"] = factored_rms(
                g, state["exp_avg_r"], state["exp_avg_c"], hp.beta1, hp.eps
            )
            return F.sign(g / denom)
        return F.sign(EmoNavi.direction(self, g, state))


def seed_emo_ratio(scalar: mx.array) -> mx.array:
    """EmoNeco's shadow ratio (``get_scalar_ratio``): 0.7 + 0.2 s above 0.6, 0.1 below -0.6, 0.3 for |s| > 0.3,
    else 0."""
    return mx.where(
        scalar > 0.6,
        0.7 + 0.2 * scalar,
        mx.where(scalar < -0.6, 0.1, mx.where(mx.abs(scalar) > 0.3, 0.3, 0.0)),
    )


def softsign(x: mx.array) -> mx.array:
    """``x / (1 + |x|)``."""
    return x / (1.0 + mx.abs(x))


def neco_direction(g: mx.array, blended: mx.array, scalar: mx.array, eps: Any) -> mx.array:
    """EmoNeco's update direction from the blended gradient and the loss scalar ``s``.

    ``softsign(b) * (||g|| + eps)`` for ``0.3 < s <= 0.5``, ``softsign(b)`` for ``s < -0.3``,
    otherwise ``sign(b)`` where it agrees with ``sign(g)`` and 0 elsewhere (cautious sign).
    """
    direction = F.sign(blended)
    cautious = mx.where(direction == F.sign(g), direction, 0.0)
    soft = softsign(blended)
    return mx.where(
        (scalar > 0.3) & (scalar <= 0.5),
        soft * (F.norm(g) + eps),
        mx.where(scalar < -0.3, soft, cautious),
    )


@register
@_emo_args
class EmoNeco(EmoNavi):
    r"""EmoNeco: a Lion/Tiger-style blended gradient, stepped by its softsign or cautious sign by the loss trend.

    Two EMAs of the loss (short 0.3, long 0.01; initialised with the first loss) give
    :math:`s_t = \tanh(5(\sigma_t - \ell_t))`. With :math:`b_t = (1-\beta_1) g_t + \beta_1 m_{t-1}`,
    :math:`m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t` and :math:`p_t = p_{t-1} - \eta u_t`, where
    :math:`u_t` is ``softsign(b) (||g|| + eps)`` for :math:`0.3 < s_t \le 0.5`, ``softsign(b)``
    for :math:`s_t < -0.3`, and the cautious sign of :math:`b_t` otherwise (see :func:`neco_direction`).
    Before the step, when the shadow ratio :math:`r_t` (:func:`seed_emo_ratio`: :math:`0.7 + 0.2 s` above 0.6,
    0.1 below -0.6, 0.3 for :math:`|s| > 0.3`, else 0) is positive, :math:`p \leftarrow p + r_t (s - p)` and
    :math:`s \leftarrow s + w (p - s)` (``shadow_weight`` :math:`w`); the shadow is always on. It needs the
    loss (see :class:`EmoNavi`).

    Reference: the EmoNeco of NoteDance's Keras optimizer collection (``optimizers/emonavi.py``; no paper),
    checked against a NumPy transcription of it (``tests/parity/rows/emo.py``); pytorch_optimizer 4.1.0 has no
    such class. Keywords and their order are that class's, with ``eps`` for its ``epsilon`` (as in the
    pytorch_optimizer Emo classes). Difference: the Keras class updates its loss EMAs once per *variable* (a
    per-parameter-state port); this class updates them once per step, as the pytorch_optimizer original did.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): the interpolation factor of the blended gradient and
            the momentum's decay rate. Default ``(0.9, 0.99)``.
        eps: :math:`\epsilon` (>= 0) added to the gradient norm. Default ``1e-8``.
    """

    name = "emoneco"
    family = "sign"
    reference = "Keras-collection EmoNeco (NumPy transcription in tests/parity/rows/emo.py)"
    loss_ema_rates = {"short": 0.3, "long": 0.01}

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.99),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        shadow_weight: Tunable = 0.05,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        # EmoNavi's constructor in its own keyword order; EmoNeco always keeps the shadow.
        EmoNavi.__init__(
            self, learning_rate, betas, True, shadow_weight, weight_decay, weight_decouple, fixed_decay, eps, maximize,
            state_dtype=state_dtype,
        )  # fmt: skip

    def step_scalars(self, hp) -> None:
        ema = self._update_loss_emas(hp)
        hp.scalar = mx.tanh(5.0 * (ema["short"] - ema["long"]))
        hp.ratio = seed_emo_ratio(hp.scalar)

    def init_moments(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)

    def seed_shadow(self, p: mx.array, state: dict) -> mx.array:
        """Pull ``p`` towards the shadow by ``ratio`` and the shadow towards ``p`` when ``ratio > 0``."""
        hp = self.hp
        if not self.use_shadow:
            return p
        active = hp.ratio > 0.0
        shadow = state["shadow"]
        mixed = F.lerp(p, shadow, hp.ratio)
        state["shadow"] = mx.where(active, F.lerp(shadow, mixed, hp.shadow_weight), shadow)
        return mx.where(active, mixed, p)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        p, g = self.decay_weights(p, g)
        p = self.seed_shadow(p, state)
        return p - self.hp.lr * self.direction(g, state)

    def direction(self, g: mx.array, state: dict) -> mx.array:
        hp = self.hp
        blended = g * hp.one_minus_beta1 + hp.beta1 * state["exp_avg"]
        state["exp_avg"] = hp.beta2 * state["exp_avg"] + hp.one_minus_beta2 * g
        return neco_direction(g, blended, hp.scalar, hp.eps)


@register
@_emo_args
class EmoZeal(EmoNeco):
    r"""EmoZeal: EmoNeco's step plus an Adafactor-style step for matrices, Adam-style steps for vectors.

    Loss scalars and shadow as in :class:`EmoNeco` (the shadow is optional, on by default). For
    tensors with ``ndim >= 2`` two steps are taken: EmoNeco's :math:`p \leftarrow p - \eta u_t`, then
    :math:`p \leftarrow p - \eta\, g_t / (\sqrt{R_t C_t} + \epsilon)` with the factored row/column RMS
    averaged with :math:`\beta_1` (:func:`factored_rms`). Vectors take
    :math:`p \leftarrow p - \eta\, m_t / (\sqrt{v_t} + \epsilon)` (no bias correction). It needs the loss (see
    :class:`EmoNavi`).

    Reference: the EmoZeal interface of NoteDance's Keras optimizer collection (no paper), checked against a
    NumPy transcription (``tests/parity/rows/emo.py``); pytorch_optimizer 4.1.0 has no such class. The update
    follows the pytorch_optimizer release that had ``EmoZeal`` with this signature (``use_shadow=True``), with
    the Keras collection's shadow-ratio rule (:func:`seed_emo_ratio`, shared with :class:`EmoNeco`; that
    pytorch_optimizer release used a linear ramp in ``|s|`` instead). Keywords and their order are the Keras
    class's, with ``eps`` for its ``epsilon``.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): the blend factor and factored-RMS decay rate
            :math:`\beta_1`, and the decay rate :math:`\beta_2` of the momentum and the vectors' second moment.
            Default ``(0.9, 0.999)``.
        eps: :math:`\epsilon` (>= 0) added to the denominators and to the gradient norm. Default ``1e-8``.
        use_shadow: Keep the shadow copy of the parameters. Default ``True``.
    """

    name = "emozeal"
    family = "memory-efficient"
    reference = "Keras-collection EmoZeal (NumPy transcription in tests/parity/rows/emo.py)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        use_shadow: bool = True,
        shadow_weight: Tunable = 0.05,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        EmoNavi.__init__(
            self, learning_rate, betas, use_shadow, shadow_weight, weight_decay, weight_decouple, fixed_decay, eps,
            maximize, state_dtype=state_dtype,
        )  # fmt: skip

    def init_moments(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        EmoFact.init_moments(self, parameter, state)  # exp_avg_r/c, or exp_avg (again) and exp_avg_sq

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        p = self.seed_shadow(p, state)
        if g.ndim >= 2:
            p = p - hp.lr * EmoNeco.direction(self, g, state)
            denom, state["exp_avg_r"], state["exp_avg_c"] = factored_rms(
                g, state["exp_avg_r"], state["exp_avg_c"], hp.beta1, hp.eps
            )
            return p - hp.lr * (g / denom)
        return p - hp.lr * EmoNavi.direction(self, g, state)
