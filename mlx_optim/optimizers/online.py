"""Online-learning and range-scaled optimizers from pytorch_optimizer: FTRL, ROSE and BCOS.

Each is parity-checked against its pytorch_optimizer 4.1.0 class (``tests/parity/rows/online.py``).
"""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.precision import stochastic_round
from mlx_optim.registry import register

# ---------------------------------------------------------------------------- pure helpers


def ftrl_step(
    g: mx.array,
    p: mx.array,
    z: mx.array,
    n: mx.array,
    lr: mx.array,
    lr_power: mx.array,
    beta: mx.array,
    lambda_1: mx.array,
    lambda_2: mx.array,
) -> tuple[mx.array, mx.array, mx.array]:
    """One FTRL-Proximal step; returns ``(p, z, n)``.

    The accumulator correction uses ``n ** -lr_power`` but the denominator uses ``sqrt(n)`` whatever
    ``lr_power`` is (pytorch_optimizer's formula).
    """
    new_n = n + mx.square(g)
    sigma = (mx.power(new_n, -lr_power) - mx.power(n, -lr_power)) / lr
    z = z + g - sigma * p
    de_nom = (mx.sqrt(new_n) + beta) / lr + lambda_2
    new_p = (F.sign(z) * lambda_1 - z) / de_nom
    return mx.where(mx.abs(z) <= lambda_1, mx.zeros_like(new_p), new_p), z, new_n


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


def bcos_conditional_v(g: mx.array, m: mx.array, beta: mx.array, beta2: mx.array | None, simple: bool) -> mx.array:
    """BCOS's conditional second-moment estimate (mode ``'c'``) from the gradient and the (updated) momentum.

    ``simple``: ``beta_v m^2 + (1 - beta_v) g^2`` with ``beta_v = beta2`` or ``1 - (1 - beta)^2``; otherwise
    ``(3 beta^2 - 2 beta^3) m^2 + (1 - beta)^2 g^2 + 2 beta (1 - beta)^2 m g``.
    """
    g2 = mx.square(g)
    if simple:
        beta_v = 1.0 - (1.0 - beta) ** 2 if beta2 is None else beta2
        return beta_v * mx.square(m) + (1.0 - beta_v) * g2
    one_minus = (1.0 - beta) ** 2
    return (3.0 * beta**2 - 2.0 * beta**3) * mx.square(m) + one_minus * g2 + 2.0 * beta * one_minus * m * g


# ---------------------------------------------------------------------------- optimizers


@register
class FTRL(Optimizer):
    r"""Follow The Regularized Leader, FTRL-Proximal (McMahan et al., 2013), pytorch_optimizer semantics.

    Keeps the accumulated squared gradients ``n`` and the shifted gradient sum ``z``; the parameter is
    the closed-form minimiser of the linearised, L1/L2-regularised objective (zero where ``|z| <= lambda_1``).

    .. math::
        n_t = n_{t-1} + g_t^2,\quad
        \sigma_t = \frac{n_t^{-c} - n_{t-1}^{-c}}{\eta},\quad
        z_t = z_{t-1} + g_t - \sigma_t p_{t-1},\\
        p_t = \begin{cases} 0 & |z_t| \le \lambda_1 \\
        \frac{\operatorname{sign}(z_t)\lambda_1 - z_t}{(\sqrt{n_t} + \beta)/\eta + \lambda_2} & \text{else}
        \end{cases}

    with ``c = lr_power``. Paper: "Ad Click Prediction: a View from the Trenches" (KDD 2013).
    Reference quirk kept: the denominator uses ``sqrt(n)`` for every ``lr_power`` (Keras uses ``n^-c``).
    """

    name = "ftrl"
    family = "other"
    reference = "pytorch_optimizer.FTRL"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        lr_power: Tunable = -0.5,
        beta: Tunable = 0.0,
        lambda_1: Tunable = 0.0,
        lambda_2: Tunable = 0.0,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lr_power", lr_power, None, 0.0)
        self._hyper("beta", beta, 0.0)
        self._hyper("lambda_1", lambda_1, 0.0)
        self._hyper("lambda_2", lambda_2, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["z"] = self.zeros(parameter)
        state["n"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, state["z"], state["n"] = ftrl_step(
            g, p, state["z"], state["n"], hp.lr, hp.lr_power, hp.beta, hp.lambda_1, hp.lambda_2
        )
        return p


@register
class ROSE(Optimizer):
    r"""ROSE: gradient steps scaled by row ranges, pytorch_optimizer semantics (stateless).

    For a parameter with two or more axes the gradient is centred per row (``centralize``) and divided by
    its per-row range ``r = |max g| - min g`` (over all axes but the first); with ``stabilize`` the ranges
    are blended with their mean ``\bar r`` by the trust ``\tau = \bar r / (\operatorname{std}(r) + \bar r)``.
    A vector is divided by its whole range; a scalar takes a sign step.

    .. math::
        d = \bar r + \tau (r - \bar r),\quad p_t = p_{t-1} - \eta\, \frac{g_t}{d}\quad (d = 1 \text{ where } d = 0)

    From "Stateless optimization through range-normalized gradient updates" (github.com/MatthewK78/Rose).
    ``wd_schedule`` scales the weight decay's learning rate to ``lr / lr_ref``: a number is ``lr_ref``; ``True``
    takes the initial learning rate (the schedule's value at step 0), which is what the reference reads from
    ``initial_lr`` that torch schedulers set. ``bf16_sr`` (default on) writes bfloat16 parameters back with
    stochastic rounding (a key kept in ``state["sr_key"]``), so steps below bf16's spacing still move them in
    expectation. The torch knob ``compute_dtype`` is not ported: the update runs in float32 for
    float32/bf16/fp16 parameters (the reference computes in float64 by default).
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
            self.state["sr_key"] = mx.random.key(seed)
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
            self.state["sr_key"], self._sr_key = mx.random.split(self.state["sr_key"])

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


@register
class BCOS(Optimizer):
    r"""BCOS: block-coordinate optimal step sizes (Jiang et al., 2025), pytorch_optimizer semantics.

    A search direction ``d`` (the gradient, mode ``'g'``, or the momentum ``m``, modes ``'m'``/``'c'``)
    divided by the square root of a second-moment estimate ``v``: an EMA of ``d^2`` (modes ``'g'``/``'m'``)
    or, in mode ``'c'``, a conditional estimate from ``m`` and ``g`` without extra state.

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t,\quad
        v_t = (3\beta^2 - 2\beta^3) m_t^2 + (1-\beta)^2 g_t^2 + 2\beta(1-\beta)^2 m_t g_t \ (\text{mode c}),\\
        p_t = p_{t-1} - \eta\, \frac{d_t}{\sqrt{v_t} + \epsilon}

    Paper: "Stochastic Approximation with Block Coordinate Optimal Stepsizes" (arXiv:2507.08963).
    As the reference: ``m`` starts at the first gradient and ``v`` at its square (before weight decay);
    mode ``'c'`` evaluates its estimate with the *updated* momentum (the reference's ``old_m`` aliases
    the in-place updated buffer); weight decay is never ``fixed``.
    """

    name = "bcos"
    family = "adaptive"
    reference = "pytorch_optimizer.BCOS"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.9,
        beta2: Tunable | None = None,
        mode: str = "c",
        simple_cond: bool = False,
        weight_decay: Tunable = 0.1,
        weight_decouple: bool = True,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._choice("mode", mode, ("g", "m", "c"))
        self._decay_options(weight_decay, weight_decouple, False)
        self._hyper("eps", eps, 0.0)
        self.has_beta2 = beta2 is not None
        if self.has_beta2:
            self._hyper("beta2", beta2)
        self.mode, self.simple_cond = mode, simple_cond

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.mode in ("m", "c"):
            state["m"] = self.zeros(parameter)
        if self.mode in ("g", "m"):
            state["v"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1  # the state starts at the first gradient

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g0 = g
        p, g = self.decay_weights(p, g)
        beta2 = hp.beta2 if self.has_beta2 else None
        d = g
        if self.mode in ("m", "c"):
            m = mx.where(hp.first, g0, state["m"])
            d = state["m"] = F.torch_lerp(m, g, hp.one_minus_beta)
        if self.mode in ("g", "m"):
            v = mx.where(hp.first, mx.square(g0), state["v"])
            v = state["v"] = F.torch_lerp(v, mx.square(d), 1.0 - (hp.beta if beta2 is None else beta2))
        else:
            v = bcos_conditional_v(g, d, hp.beta, beta2, self.simple_cond)
        return p - hp.lr * d / (mx.sqrt(v) + hp.eps)
