"""Adam-like methods from pytorch_optimizer, group B: AdaGC, Adalite, AdamC, AdamG, AdaShift, AdaSmooth,
AdaTAM, Aida, Amos, AvaGrad."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register

# ---------------------------------------------------------------------------- pure helpers


def normalize_dim0(x: mx.array, eps: float = 1e-12) -> mx.array:
    """``torch.nn.functional.normalize(x, p=2, dim=0)``: divide by the L2 norm along the first axis."""
    if x.ndim == 0:
        return x / mx.maximum(mx.abs(x), eps)
    n = mx.sqrt(mx.sum(mx.square(x), axis=0, keepdims=True))
    return x / mx.maximum(n, eps)


# ---------------------------------------------------------------------------- AdaGC


@register
class AdaGC(Optimizer):
    r"""AdaGC (Wang et al., 2025): Adam with adaptive, per-tensor gradient clipping.

    During warmup (``step < warmup_steps``, and always on the first step) the
    gradient is clipped to a global norm ``lambda_abs`` and the per-tensor
    threshold :math:`\gamma` keeps the minimum clipped norm; afterwards each tensor
    is clipped relative to its own history:

    .. math::
        h_t = \min\Big(\frac{\lambda_{rel} \max(\gamma_{t-1}, \epsilon)}{\max(\lVert g_t\rVert, \epsilon)}, 1\Big),\quad
        \hat g_t = h_t g_t,\quad \gamma_t = \beta \gamma_{t-1} + (1-\beta) \lVert \hat g_t \rVert

    and :math:`\hat g_t` drives a bias-corrected Adam step. Paper: "AdaGC: Improving
    Training Stability for Large Language Model Pretraining" (arXiv:2502.11034).
    Reference quirk kept for parity: with L2 weight decay (``weight_decouple=False``)
    the reference recomputes the warmup global norm before each tensor, over
    gradients of which the already-visited tensors (including the current one)
    have the L2 term folded in; we reproduce that order-dependent norm.
    """

    name = "adagc"
    family = "adam"
    reference = "pytorch_optimizer.AdaGC"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        beta: Tunable = 0.98,
        lambda_abs: Tunable = 1.0,
        lambda_rel: Tunable = 1.05,
        warmup_steps: int = 100,
        weight_decay: Tunable = 1e-1,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._hyper("lambda_abs", lambda_abs, 0.0, None, "()")
        self._hyper("lambda_rel", lambda_rel, 0.0, None, "()")
        self._check("warmup_steps", warmup_steps, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.warmup_steps = int(warmup_steps)
        self._warmup_norms: list[mx.array] = []

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        state["gamma"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.warmup = (hp.step < self.warmup_steps) | (hp.step == 1)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        # The global gradient norm the reference sees before each tensor during warmup.
        items = leaves(gradients, parameters, self.state)
        raw = [mx.sum(mx.square(g.astype(mx.float32))) for _, g, _, _ in items]
        l2 = not self.weight_decouple and "weight_decay" not in self._zero
        if not l2:
            total = mx.sqrt(sum(raw[1:], raw[0]))
            self._warmup_norms = [total] * len(items)
            return
        decayed = []
        for (path, g, p, _), r in zip(items, raw, strict=True):
            if self.decay_filter is not None and not self.decay_filter(path):
                decayed.append(r)
                continue
            g32 = -g.astype(mx.float32) if self.maximize else g.astype(mx.float32)
            decayed.append(mx.sum(mx.square(g32 + self.hp.weight_decay * p.astype(mx.float32))))
        self._warmup_norms = [
            mx.sqrt(sum(decayed[: i + 1] + raw[i + 1 :], mx.array(0.0, mx.float32))) for i in range(len(items))
        ]

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        self._leaf_index = 0
        return super().apply_gradients(gradients, parameters, loss=loss)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        global_norm = self._warmup_norms[self._leaf_index]
        self._leaf_index += 1
        p, g = self.decay_weights(p, g)
        gamma = state["gamma"]
        # warmup: absolute clipping by the global norm; gamma keeps the minimum clipped norm
        g_warm = g * mx.minimum(hp.lambda_abs / (global_norm + hp.eps), 1.0)
        warm_norm = F.norm(g_warm)
        gamma_warm = mx.where(hp.step == 1, warm_norm, mx.minimum(gamma, warm_norm))
        # afterwards: relative clipping by the tensor's own history
        h = mx.minimum(hp.lambda_rel * mx.maximum(gamma, hp.eps) / mx.maximum(F.norm(g), hp.eps), 1.0)
        g_rel = g * h
        gamma_rel = F.lerp(gamma, F.norm(g_rel), hp.one_minus_beta)
        g_hat = mx.where(hp.warmup, g_warm, g_rel)
        state["gamma"] = mx.where(hp.warmup, gamma_warm, gamma_rel)
        m = F.lerp(state["exp_avg"], g_hat, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g_hat)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)


# ---------------------------------------------------------------------------- Adalite


def adalite_factored_step(g, m, v, state, hp, step_bc2):
    """Adalite's row/column-factored moments for a 2-D gradient; returns ``(u, v_avg)`` and refreshes ``state``."""
    m = F.lerp(m, g, hp.one_minus_beta1)
    v = F.lerp(v, mx.square(g - m), hp.one_minus_beta2)
    v_avg = v / step_bc2
    row_mean, col_mean = v.mean(axis=1), v.mean(axis=0)
    imp_c = mx.softmax(row_mean, axis=0)[:, None]
    imp_r = mx.softmax(col_mean, axis=0)[None, :]
    m = F.lerp(m, g, 1 - imp_c * imp_r)
    u = F.lerp(m, g, hp.one_minus_beta1)
    state["v_avg_0"] = v.sum(axis=1)
    state["v_avg_1"] = v.sum(axis=0) / mx.maximum(v.sum(), hp.eps2)
    imp_c = mx.softmax(row_mean / hp.tau, axis=-1)[:, None]
    imp_r = mx.softmax(col_mean / hp.tau, axis=-1)[None, :]
    c = (m * imp_r).sum(axis=1)[:, None]
    r = (m * imp_c).sum(axis=0)[None, :]
    s = (c.T @ m @ r.T) / mx.maximum(mx.square(c).sum() * mx.square(r).sum(), hp.eps2)
    state["m_avg_c"], state["m_avg_r"], state["m_avg_u"] = c, r, s
    return u, v_avg


@register
class Adalite(Optimizer):
    r"""Adalite (pytorch_optimizer): Adam-like updates with factored moments and a tensor-wise trust ratio.

    The gradient is rescaled by the trust ratio
    :math:`\max(\lVert p\rVert / \max(\lVert g\rVert, g_{min}), r_{min})`. For
    tensors with two or more dimensions (reshaped to ``(shape[0], -1)``) the first
    moment is kept as a rank-one factorization :math:`m = c\,s\,r` and the second
    moment as row/column sums (Adafactor-like); vectors keep full moments.

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        v_t = \operatorname{lerp}(v_{t-1}, (g_t - m_t)^2, 1-\beta_2),\quad
        p_t = p_{t-1} - \eta\,\frac{\operatorname{lerp}(m_t, g_t, 1-\beta_1)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_1}}

    (for matrices ``m`` is first pulled towards ``g`` by softmax row/column
    importances of ``v``). Seed difference: the Keras seed defaults to
    ``weight_decouple=False``; we keep the reference default ``True``.
    """

    name = "adalite"
    family = "adam"
    reference = "pytorch_optimizer.Adalite"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        g_norm_min: Tunable = 1e-10,
        ratio_min: Tunable = 1e-4,
        tau: Tunable = 1.0,
        eps1: Tunable = 1e-6,
        eps2: Tunable = 1e-10,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("g_norm_min", g_norm_min)
        self._hyper("ratio_min", ratio_min)
        self._hyper("tau", tau)
        self._hyper("eps1", eps1, 0.0)
        self._hyper("eps2", eps2, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if parameter.ndim < 2:
            state["m_avg"] = self.zeros(parameter)
            state["v_avg"] = self.zeros(parameter)
            return
        rows = parameter.shape[0]
        cols = parameter.size // rows if rows else 0
        state["v_avg_0"] = self.zeros(parameter, (rows,))
        state["v_avg_1"] = self.zeros(parameter, (cols,))
        state["m_avg_c"] = self.zeros(parameter, (rows, 1))
        state["m_avg_r"] = self.zeros(parameter, (1, cols))
        state["m_avg_u"] = self.zeros(parameter, (1, 1))

    def step_scalars(self, hp) -> None:
        hp.bc2 = hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        shape = p.shape
        if g.ndim > 2:
            g = g.reshape(g.shape[0], -1)
        if not self.weight_decouple:
            _, g = self.apply_weight_decay(p.reshape(g.shape), g, decouple=False)
        if sum(g.shape) > 1:
            trust_ratio = mx.maximum(F.norm(p) / mx.maximum(F.norm(g), hp.g_norm_min), hp.ratio_min)
            g = g * trust_ratio
        if g.ndim < 2:
            m = F.lerp(state["m_avg"], g, hp.one_minus_beta1)
            v = F.lerp(state["v_avg"], mx.square(g - m), hp.one_minus_beta2)
            state["m_avg"], state["v_avg"] = m, v
            u, v_avg = F.lerp(m, g, hp.one_minus_beta1), v / hp.bc2
        else:
            r, c = state["v_avg_0"][:, None], state["v_avg_1"][None, :]
            v = (r * c) / mx.maximum(r.sum(), hp.eps2)
            m = state["m_avg_c"] @ state["m_avg_u"] @ state["m_avg_r"]
            u, v_avg = adalite_factored_step(g, m, v, state, hp, hp.bc2)
        u = (u / mx.sqrt(v_avg + hp.eps1)).reshape(shape)
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p - hp.lr * u


# ---------------------------------------------------------------------------- AdamC


@register
class AdamC(Optimizer):
    r"""AdamC (Defazio, 2025): Adam whose decoupled weight decay is corrected for normalized layers.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1}(1 - \lambda\,\eta_{wd}) - \eta\,\frac{m_t/(1-\beta_1^t)}{(\sqrt{v_t + 10^{-15}} + \epsilon)
        / \sqrt{1-\beta_2^t}}

    with :math:`\eta_{wd} = \eta` normally and :math:`\eta^2/\eta_{max}` when
    ``normalized`` (for LayerNorm/BatchNorm-like parameters; ``eta_max`` is the
    constructor learning rate). ``ams_bound`` uses the running maximum of
    :math:`v_t`. Paper: "Why Gradients Rapidly Increase Near the End of Training"
    (arXiv:2506.02285). The reference sets ``normalized`` per parameter group; here
    it is a constructor flag for the whole optimizer (the Keras seed omits it).
    """

    name = "adamc"
    family = "adam"
    reference = "pytorch_optimizer.AdamC"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        normalized: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.ams_bound, self.normalized = ams_bound, normalized
        lr0 = learning_rate(mx.array(0)) if callable(learning_rate) else learning_rate
        self.state["max_lr"] = mx.array(lr0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.wd_lr = hp.lr * hp.lr / self.state["max_lr"] if self.normalized else hp.lr

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g, lr=hp.wd_lr)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        v_hat = self.apply_amsgrad(state, v) if self.ams_bound else v
        denom = (mx.sqrt(v_hat + 1e-15) + hp.eps) / hp.bc2_sqrt
        return p - hp.lr * (m / hp.bc1) / denom


# ---------------------------------------------------------------------------- AdamG


@register
class AdamG(Optimizer):
    r"""AdamG (Pan et al., 2024): Adam with a golden-step numerator, nearly learning-rate free.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        r_t = \beta_3 r_{t-1} + (1-\beta_3)\, p\, v_t^{q},\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) r_t g_t \\
        p_t = p_{t-1} - \frac{\min(\eta, 1/\sqrt t)}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    Paper: "Towards Stability of Parameter-free Optimization" (arXiv:2405.04376).
    The tunables ``p`` and ``q`` of the numerator function keep the reference's names.
    """

    name = "adamg"
    family = "adam"
    reference = "pytorch_optimizer.AdamG"

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.95, 0.999, 0.95),
        p: Tunable = 0.2,
        q: Tunable = 0.24,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 3:
            raise ValueError(f"AdamG: betas={betas!r} must have 3 values")
        self._betas(betas[:2], 2)
        self._hyper("beta3", betas[2], 0.0, 1.0, "[]")
        self._hyper("p", p, 0.0, None, "()")
        self._hyper("q", q, 0.0, None, "()")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["m"] = self.zeros(parameter)
        state["v"] = self.zeros(parameter)
        state["r"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = mx.minimum(hp.lr, mx.rsqrt(hp.step)) / hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        v = hp.beta2 * state["v"] + hp.one_minus_beta2 * mx.square(g)
        r = F.lerp(state["r"], hp.p * mx.power(v, hp.q), hp.one_minus_beta3)
        m = hp.beta1 * state["m"] + hp.one_minus_beta1 * r * g
        state["m"], state["v"], state["r"] = m, v, r
        return p - hp.step_size * m / (mx.sqrt(v / hp.bc2) + hp.eps)


# ---------------------------------------------------------------------------- AdaShift


@register
class AdaShift(Optimizer):
    r"""AdaShift (Zhou et al., 2019): decorrelate the second moment by using a gradient ``keep_num`` steps old.

    The last ``keep_num`` (:math:`n`) gradients are kept in a ring buffer
    ``state["grad_queue"]`` of shape ``(n, *p.shape)``. While it fills, only the
    first moment accumulates; afterwards, with the oldest gradient :math:`g_{t-n}`,

    .. math::
        m_t = \beta_1 (m_{t-1} - w_{first}\, g_{t-n}) + w_{last}\, g_t,\quad
        v_t = \operatorname{lerp}(v_{t-1}, \phi(g_{t-n}^2), 1-\beta_2),\quad
        p_t = p_{t-1} - \eta\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^{\max(1, t-n)})} + \epsilon}

    with :math:`w_{last} = 1/\sum_{i<n}\beta_1^i`, :math:`w_{first} = \beta_1^{n-1} w_{last}`
    and :math:`\phi` = ``reduce_func`` (default ``mx.max`` over the whole tensor,
    ``None`` for the identity; the Keras seed's ``tf.reduce_max``). ``cautious``
    masks the update as in Cautious optimizers. Paper: "AdaShift: Decorrelation
    and Convergence of Adaptive Learning Rate Methods" (arXiv:1810.00143).
    """

    name = "adashift"
    family = "adam"
    reference = "pytorch_optimizer.AdaShift"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        keep_num: int = 10,
        reduce_func: Callable[[mx.array], mx.array] | None = mx.max,
        eps: Tunable = 1e-10,
        maximize: bool = False,
        *,
        cautious: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("keep_num", keep_num, 0.0, None, "()")
        self._hyper("eps", eps, 0.0)
        self.keep_num = int(keep_num)
        self.reduce_func = reduce_func if reduce_func is not None else (lambda x: x)
        self.cautious = cautious

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grad_queue"] = self.zeros(parameter, (self.keep_num, *parameter.shape))
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        n = self.keep_num
        weight_sum = sum(mx.power(hp.beta1, float(i)) for i in range(n))
        hp.first_grad_weight = mx.power(hp.beta1, float(n - 1)) / weight_sum
        hp.last_grad_weight = 1.0 / weight_sum
        hp.bc2 = hp.bias_correction("beta2", mx.maximum(hp.step - n, 1.0))
        hp.ready = hp.step > n
        hp.slot = mx.remainder(self.state["step"] - 1, n).astype(mx.int32).reshape(1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        queue = state["grad_queue"]
        offset = mx.take(queue, hp.slot, axis=0)[0]
        state["grad_queue"] = mx.slice_update(queue, g[None].astype(queue.dtype), hp.slot, axes=(0,))
        m_prev = mx.where(hp.ready, state["exp_avg"] - hp.first_grad_weight * offset, state["exp_avg"])
        m = hp.beta1 * m_prev + hp.last_grad_weight * g
        v = F.lerp(state["exp_avg_sq"], self.reduce_func(mx.square(offset)), hp.one_minus_beta2)
        state["exp_avg"] = m
        state["exp_avg_sq"] = mx.where(hp.ready, v, state["exp_avg_sq"])
        update = self.apply_cautious(m, g) if self.cautious else m
        new_p = p - hp.lr * update / (mx.sqrt(v / hp.bc2) + hp.eps)
        return mx.where(hp.ready, new_p, p)


# ---------------------------------------------------------------------------- AdaSmooth


@register
class AdaSmooth(Optimizer):
    r"""AdaSmooth (Lu, 2022): a per-coordinate effective-ratio schedule for the second-moment decay.

    With the parameter change :math:`\Delta_t = p_t - p_{t-1}` accumulated as
    :math:`s_t = \sum \Delta`, :math:`n_t = \sum |\Delta|`,

    .. math::
        c_t = (\beta_2 - \beta_1) \frac{|s_t|}{n_t + \epsilon} + (1-\beta_2),\quad
        v_t = \operatorname{lerp}(v_{t-1}, g_t^2, c_t^2),\quad
        p_{t+1} = p_t - \frac{\eta}{\sqrt{v_t + \epsilon}} g_t

    (the reference measures :math:`\Delta` after its weight decay step). Paper: "AdaSmooth:
    An Adaptive Learning Rate Method based on Effective Ratio" (arXiv:2204.00825).
    """

    name = "adasmooth"
    family = "adam"
    reference = "pytorch_optimizer.AdaSmooth"
    # p' <- v <- c <- |s| / (n + eps) <- s, n <- p - prev_param is 14 operations deep: mx.compile cuts it at
    # |s| and n + eps, and p - prev_param (read by both) becomes a third cut
    ops_per_leaf = 4

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.5, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["prev_param"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))
        state["s"] = self.zeros(parameter)
        state["n"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.beta21, hp.c2 = hp.beta2 - hp.beta1, hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        diff = p - state["prev_param"]
        s = state["s"] + diff
        n = state["n"] + mx.abs(diff)
        c = mx.abs(s) / (n + hp.eps) * hp.beta21 + hp.c2
        v = F.lerp(state["exp_avg_sq"], mx.square(g), mx.square(c))
        state["s"], state["n"], state["exp_avg_sq"], state["prev_param"] = s, n, v, p
        return p - hp.lr / mx.sqrt(v + hp.eps) * g


# ---------------------------------------------------------------------------- AdaTAM


@register
class AdaTAM(Optimizer):
    r"""AdaTAM (pytorch_optimizer): Adam whose momentum input is scaled by gradient-momentum alignment.

    .. math::
        s_t = \operatorname{lerp}(s_{t-1}, \hat m_{t-1} \odot \hat g_t, 1-\rho),\quad
        m_t = \beta_1 m_{t-1} + \big(\tfrac{1+s_t}{2} + \epsilon\big) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \eta\,\frac{m_t}{\sqrt{v_t} + \epsilon}

    where :math:`\hat x` is :math:`x` normalized along its first axis and
    :math:`\rho` = ``decay_rate``; no bias correction, as in the reference. Paper:
    "Torque-Aware Momentum" (arXiv:2412.18790).
    """

    name = "adatam"
    family = "adam"
    reference = "pytorch_optimizer.AdaTAM"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        decay_rate: Tunable = 0.9,
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
        self._hyper("decay_rate", decay_rate, 0.0, 1.0, "[)")
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["s"] = self.zeros(parameter)
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        corr = normalize_dim0(state["exp_avg"]) * normalize_dim0(g)
        s = F.lerp(state["s"], corr, hp.one_minus_decay_rate)
        m = hp.beta1 * state["exp_avg"] + ((1 + s) / 2 + hp.eps) * g
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["s"], state["exp_avg"], state["exp_avg_sq"] = s, m, v
        return p - hp.lr * m / (mx.sqrt(v) + hp.eps)


# ---------------------------------------------------------------------------- Aida


def aida_projection(g: mx.array, m: mx.array, k: int, xi: Any) -> mx.array:
    """``k`` alternating mutual projections of ``g`` and ``m``; returns the residual ``proj_m - proj_g``."""
    for _ in range(k):
        dot = mx.sum(g * m)
        g, m = g * (dot / (mx.sum(mx.square(g)) + xi)), m * (dot / (mx.sum(mx.square(m)) + xi))
    return m - g


@register
class Aida(Optimizer):
    r"""Aida (Zhang et al., 2024): AdaBelief-like variance of the residual after mutual projections.

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        r_t = \mathcal{P}^k_m - \mathcal{P}^k_g,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) r_t^2 + \epsilon \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{(\sqrt{v_t + 10^{-15}} + \epsilon)/\sqrt{1-\beta_2^t}}

    where :math:`\mathcal{P}^k` are ``k`` alternating projections of :math:`g_t`
    and :math:`m_t` onto each other (``xi`` guards the divisions). Options as in the
    reference: ``rectify`` (RAdam rectification, with ``n_sma_threshold`` and
    ``degenerated_to_sgd``), ``ams_bound``, ``adam_debias``, ``adanorm``. Paper:
    "A Novel Adaptive Optimizer Using Layer-wise Vector Projections" (arXiv:2406.05074).
    The Keras seed calls ``adanorm_r`` ``r``.
    """

    name = "aida"
    family = "adam"
    reference = "pytorch_optimizer.Aida"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        k: int = 2,
        xi: Tunable = 1e-20,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
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
        adanorm_r: Tunable = 0.95,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("k", k, 0.0)
        self._hyper("xi", xi, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._hyper("adanorm_r", adanorm_r, 0.0, 1.0)
        self.k = int(k)
        self.rectify, self.n_sma_threshold, self.degenerated_to_sgd = rectify, n_sma_threshold, degenerated_to_sgd
        self.ams_bound, self.adam_debias, self.adanorm = ams_bound, adam_debias, adanorm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_var"] = self.zeros(parameter)
        if self.ams_bound:
            state["max_exp_avg_var"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        step_size = hp.lr
        if self.rectify:
            rt, n_sma = F.rectification(hp.beta2, hp.step, self.n_sma_threshold, hp.one_minus_beta2)
            hp.rectified = n_sma >= self.n_sma_threshold
            step_size = step_size * mx.where(hp.rectified, rt, 1.0 if self.degenerated_to_sgd else -1.0)
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = F.lerp(state["exp_avg"], s_grad, hp.one_minus_beta1)
        residual = aida_projection(g, m, self.k, hp.xi)
        var = hp.beta2 * state["exp_avg_var"] + hp.one_minus_beta2 * mx.square(residual) + hp.eps
        state["exp_avg"], state["exp_avg_var"] = m, var
        var_hat = self.apply_amsgrad(state, var, "max_exp_avg_var") if self.ams_bound else var
        denom = mx.sqrt(var_hat + 1e-15) + hp.eps
        if not self.rectify:
            return p - hp.step_size * m / (denom / hp.bc2_sqrt)
        sgd = mx.where(hp.step_size > 0, p - hp.step_size * m, p)
        return mx.where(hp.rectified, p - hp.step_size * m / denom, sgd)


# ---------------------------------------------------------------------------- Amos


def amos_scale(shape: Sequence[int]) -> float:
    """The reference's target weight scale from the shape: 0.5 for vectors, ``sqrt(2/shape[1])`` for
    matrices, ``sqrt(1/shape[1])`` otherwise."""
    if len(shape) <= 1:
        return 0.5
    if len(shape) == 2:
        return math.sqrt(2 / shape[1])
    return math.sqrt(1 / shape[1])


@register
class Amos(Optimizer):
    r"""Amos (Tian & Parikh, 2022): adaptive step with weight decay towards a shape-derived target scale.

    With :math:`\bar g^2_t = \operatorname{mean}(g_t^2)` per tensor,
    :math:`\hat v_t = \operatorname{EMA}_\beta(\bar g^2)` and
    :math:`r_t = (1-\beta^t)/(\hat v_t + \epsilon)`, :math:`\eta_0 = \eta\,\sigma(p)`:

    .. math::
        \gamma_t = \frac{\eta^2 r_t \bar g^2_t}{\sqrt{1 + c\sqrt\eta\, d_{t-1}}},\quad
        u_t = \frac{\tfrac12(\gamma_t - \lambda_{l2}) p + \eta_0 \sqrt{r_t}\, g_t}{1 + d\sqrt{\eta_0}\, d_{t-1}},\quad
        d_t = d_{t-1}(1+\gamma_t) + \gamma_t,\quad p_t = p_{t-1} - u_t

    (``momentum`` > 0 averages :math:`u_t`). The scale :math:`\sigma(p)` follows the
    reference's PyTorch layout (``shape[1]`` is the fan-in of a Linear weight, as in
    MLX; for MLX conv weights ``shape[1]`` is a kernel dimension, as the reference's
    rule would read it). Paper: "Amos: An Adam-style Optimizer with Adaptive Weight
    Decay towards Model-Oriented Scale" (arXiv:2210.11693).
    """

    name = "amos"
    family = "adam"
    reference = "pytorch_optimizer.Amos"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        beta: Tunable = 0.999,
        momentum: Tunable = 0.0,
        extra_l2: Tunable = 0.0,
        c_coef: Tunable = 0.25,
        d_coef: Tunable = 0.25,
        eps: Tunable = 1e-18,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._hyper("extra_l2", extra_l2, 0.0)
        self._hyper("c_coef", c_coef)
        self._hyper("d_coef", d_coef)
        self._hyper("eps", eps, 0.0)
        self.use_momentum = callable(momentum) or momentum > 0

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg_sq"] = self.zeros(parameter, ())
        state["decay"] = self.zeros(parameter, ())
        if self.use_momentum:
            state["exp_avg"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc = hp.bias_correction("beta")
        hp.lr_sqrt = mx.sqrt(hp.lr)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        g2 = mx.mean(mx.square(g))
        init_lr = hp.lr * amos_scale(p.shape)
        v = hp.beta * state["exp_avg_sq"] + hp.one_minus_beta * g2
        r_v_hat = hp.bc / (v + hp.eps)
        decay = state["decay"]
        factor_c = mx.rsqrt(1 + hp.c_coef * hp.lr_sqrt * decay)
        factor_d = 1 + hp.d_coef * mx.sqrt(init_lr) * decay
        gamma = factor_c * r_v_hat * (hp.lr * hp.lr) * g2
        update = (p / 2 * (gamma - hp.extra_l2) + g * (mx.sqrt(r_v_hat) * init_lr)) / factor_d
        state["exp_avg_sq"], state["decay"] = v, decay * (1 + gamma) + gamma
        if self.use_momentum:
            update = F.lerp(state["exp_avg"], update, hp.one_minus_momentum)
            state["exp_avg"] = update
        return p - update


# ---------------------------------------------------------------------------- AvaGrad


@register
class AvaGrad(Optimizer):
    r"""AvaGrad (Savarese et al., 2021): Adam with a one-step-delayed second moment and a global step scale.

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        d_t = \sqrt{v_{t-1}}/\sqrt{1-\beta_2^{t-1}} + \epsilon,\quad
        p_t = p_{t-1} - \frac{\gamma_{t-1}\eta}{1-\beta_1^t}\,\frac{m_t}{d_t}\ (t > 1) \\
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        \gamma_t = \Big(\operatorname{mean}_{\text{all params}}
        \big(\sqrt{v_{t-1}}/\sqrt{1-\beta_2^t} + \epsilon\big)^{-2}\Big)^{-1/2}

    The first step only updates the moments. :math:`\gamma` is a global scalar
    (``state["gamma"]``), computed over the whole tree in :meth:`prepare`; as in the
    reference it uses :math:`v_{t-1}` with the step-:math:`t` bias correction.
    ``adam_debias`` drops :math:`1-\beta_1^t` from the step size. Paper:
    "Domain-independent Dominance of Adaptive Methods" (arXiv:1912.01823).
    """

    name = "avagrad"
    family = "adam"
    reference = "pytorch_optimizer.AvaGrad"

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-1,
        maximize: bool = False,
        *,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.adam_debias = adam_debias
        self.state["gamma"] = mx.array(1.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        step_size = self.state["gamma"] * hp.lr
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.prev_bc2_sqrt = mx.sqrt(hp.bias_correction("beta2", hp.step - 1))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        hp = self.hp
        inv_sq, count = mx.array(0.0, mx.float32), 0
        for _, _, _, state in leaves(gradients, parameters, self.state):
            param_wise_lr = mx.sqrt(state["exp_avg_sq"].astype(mx.float32)) / hp.bc2_sqrt + hp.eps
            inv_sq = inv_sq + mx.sum(1.0 / mx.square(param_wise_lr))
            count += state["exp_avg_sq"].size
        self.state["gamma"] = mx.rsqrt(inv_sq / max(count, 1))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v_prev = state["exp_avg_sq"]
        state["exp_avg"] = m
        state["exp_avg_sq"] = hp.beta2 * v_prev + hp.one_minus_beta2 * mx.square(g)
        new_p = p - hp.step_size * m / (mx.sqrt(v_prev) / hp.prev_bc2_sqrt + hp.eps)
        return mx.where(hp.step > 1, new_p, p)
