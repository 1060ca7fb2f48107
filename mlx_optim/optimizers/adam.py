"""Adam and its torch.optim / pytorch_optimizer relatives: Adam, AdamW, NAdam, RAdam, AdaMax."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim import kernels  # fused GPU kernels (dispatch in update_single)
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def adam_moments(g: mx.array, m: mx.array, v: mx.array, beta1, beta2) -> tuple[mx.array, mx.array]:
    """First and second moment EMAs: ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``."""
    return beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * mx.square(g)


def adam_update(g, m, v, *, beta1, beta2, eps, step_size, inv_bc2_sqrt, v_max=None, k1=None, k2=None, c1=None, c2=None):
    """One Adam step. Returns ``(delta, m, v, v_max)`` with ``p_new = p - delta``.

    ``step_size = lr / (1 - b1^t)``, ``inv_bc2_sqrt = 1 / sqrt(1 - b2^t)``. The moment EMAs are written
    ``(m k1 + g)(1 - b1)`` with ``k1 = b1 / (1 - b1)`` (pass it precomputed, or it is computed here): the same
    value as ``b1 m + (1 - b1) g`` up to rounding, and every full-size operation but ``g * g`` and ``sqrt(v)``
    can reuse a dead input buffer (the caller still holds ``g``), which measured faster on the CPU backend.
    With AMSGrad pass the running maximum ``v_max``: the denominator uses ``max(v_max, v)``, returned as the
    new running maximum (``None`` without AMSGrad). ``mlx_optim.kernels.ADAM`` is the same arithmetic.
    """
    c1 = 1 - beta1 if c1 is None else c1  # 1 - beta, k = beta / (1 - beta): precomputed per step by Adam
    c2 = 1 - beta2 if c2 is None else c2
    k1 = beta1 / c1 if k1 is None else k1
    k2 = beta2 / c2 if k2 is None else k2
    m = (m * k1 + g) * c1
    v = (v * k2 + g * g) * c2
    if v_max is not None:
        v_max = mx.maximum(v_max, v)
    v_hat = v if v_max is None else v_max
    return (m / (mx.sqrt(v_hat) * inv_bc2_sqrt + eps)) * step_size, m, v, v_max


@register
class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with torch.optim semantics (bias-corrected).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\, \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    ``weight_decay`` is an L2 penalty added to the gradient unless
    ``decoupled_weight_decay`` (then it is AdamW). ``amsgrad`` uses the running
    maximum of :math:`v_t`. Unlike ``mlx.optimizers.Adam`` the bias correction is
    always on, as in PyTorch.
    """

    name = "adam"
    family = "adam"
    reference = "torch.optim.Adam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self.amsgrad = amsgrad
        self.decoupled_weight_decay = decoupled_weight_decay

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.amsgrad:
            state["max_exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.inv_bc2_sqrt = mx.rsqrt(hp.bias_correction("beta2"))
        hp.k1, hp.k2 = hp.beta1 / hp.one_minus_beta1, hp.beta2 / hp.one_minus_beta2

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        # -- fused kernel (mlx_optim.kernels.ADAM): Metal/CUDA only; None on the CPU, where the math below runs
        fused = kernels.adam(self, g, p, state, hp.step_size, hp.inv_bc2_sqrt)
        if fused is not None:
            return fused
        # -- end fused kernel
        p, g = self.apply_weight_decay(p, g, decouple=self.decoupled_weight_decay)
        delta, state["exp_avg"], state["exp_avg_sq"], v_max = adam_update(
            g,
            state["exp_avg"],
            state["exp_avg_sq"],
            beta1=hp.beta1,
            beta2=hp.beta2,
            eps=hp.eps,
            step_size=hp.step_size,
            inv_bc2_sqrt=hp.inv_bc2_sqrt,
            v_max=state["max_exp_avg_sq"] if self.amsgrad else None,
            k1=hp.k1,
            k2=hp.k2,
            c1=hp.one_minus_beta1,
            c2=hp.one_minus_beta2,
        )
        if self.amsgrad:
            state["max_exp_avg_sq"] = v_max
        return p - delta


@register
class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, torch.optim semantics.

    ``p <- p (1 - lr wd)`` before the Adam step; default ``weight_decay=1e-2``.
    """

    name = "adamw"
    reference = "torch.optim.AdamW"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            state_dtype=state_dtype,
        )


@register
class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016) with torch.optim semantics: Adam with Nesterov momentum.

    The momentum schedule is :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\,\psi})`
    with ``momentum_decay`` :math:`\psi`; the product :math:`\prod_i \mu_i` is kept
    in ``state["mu_product"]``.

    .. math::
        p_t = p_{t-1} - \eta \frac{1-\mu_t}{1-\prod_{i\le t}\mu_i} \frac{g_t}{d_t}
              - \eta \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i} \frac{m_t}{d_t},\quad
        d_t = \sqrt{v_t/(1-\beta_2^t)} + \epsilon
    """

    name = "nadam"
    family = "adam"
    reference = "torch.optim.NAdam"

    def __init__(
        self,
        learning_rate: Tunable = 2e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        momentum_decay: Tunable = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("eps", eps, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum_decay", momentum_decay, 0.0)
        self.decoupled_weight_decay = decoupled_weight_decay
        self.state["mu_product"] = mx.array(1.0, mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        def mu(t):
            return hp.beta1 * (1 - 0.5 * mx.power(mx.array(0.96, mx.float32), t * hp.momentum_decay))

        mu_t, mu_next = mu(hp.step), mu(hp.step + 1)
        mu_product = self.state["mu_product"] * mu_t
        self.state["mu_product"] = mu_product
        hp.grad_coef = hp.lr * (1 - mu_t) / (1 - mu_product)
        hp.avg_coef = hp.lr * mu_next / (1 - mu_product * mu_next)
        hp.bc2 = hp.bias_correction("beta2")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.decoupled_weight_decay)
        m, v = adam_moments(g, state["exp_avg"], state["exp_avg_sq"], hp.beta1, hp.beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = mx.sqrt(v / hp.bc2) + hp.eps
        return p - (hp.grad_coef * g + hp.avg_coef * m) / denom


@register
class RAdam(Optimizer):
    r"""Rectified Adam (Liu et al., 2019) with pytorch_optimizer semantics.

    While the SMA length :math:`\rho_t` is below ``n_sma_threshold`` the update is
    skipped (or, with ``degenerated_to_sgd``, is momentum SGD); afterwards it is
    Adam with the rectification factor :math:`r_t`. Weight decay is decoupled
    by default. Reference quirk kept for parity: with ``weight_decouple=False``
    pytorch_optimizer's RAdam applies no weight decay at all.
    ``adam_debias`` drops the first-moment correction from the step size;
    ``adanorm`` rescales the gradient fed to the first moment (AdaNorm).
    """

    name = "radam"
    family = "adam"
    reference = "pytorch_optimizer.RAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        n_sma_threshold: int = 5,
        degenerated_to_sgd: bool = False,
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
        self.n_sma_threshold, self.degenerated_to_sgd = n_sma_threshold, degenerated_to_sgd
        self.adam_debias, self.adanorm = adam_debias, adanorm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        rt, n_sma = F.rectification(hp.beta2, hp.step, self.n_sma_threshold, hp.one_minus_beta2)
        hp.rectified = n_sma >= self.n_sma_threshold
        fallback = 1.0 if self.degenerated_to_sgd else -1.0
        step_size = hp.lr * mx.where(hp.rectified, rt, fallback)
        if not self.adam_debias:
            step_size = step_size / hp.bias_correction("beta1")
        hp.step_size = step_size
        hp.active = hp.rectified | (step_size > 0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.weight_decouple:
            p = mx.where(hp.active, self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)[0], p)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = hp.beta1 * state["exp_avg"] + hp.one_minus_beta1 * s_grad
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        adaptive = m / (mx.sqrt(v) + hp.eps)
        direction = mx.where(hp.rectified, adaptive, mx.where(hp.step_size > 0, m, 0.0))
        return p - hp.step_size * direction


@register
class AdaMax(Optimizer):
    r"""AdaMax (Kingma & Ba, 2015), pytorch_optimizer semantics: Adam with the infinity norm.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon),\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{u_t}
    """

    name = "adamax"
    family = "adam"
    reference = "pytorch_optimizer.AdaMax"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
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
        self.adam_debias, self.adanorm = adam_debias, adanorm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_inf"] = self.zeros(parameter)
        if self.adanorm:
            state["exp_grad_adanorm"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr if self.adam_debias else hp.lr / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        s_grad = self.apply_adanorm(g, state, hp.adanorm_r) if self.adanorm else g
        m = hp.beta1 * state["exp_avg"] + hp.one_minus_beta1 * s_grad
        u = mx.maximum(hp.beta2 * state["exp_inf"], mx.abs(g) + hp.eps)
        state["exp_avg"], state["exp_inf"] = m, u
        return p - hp.step_size * m / u
