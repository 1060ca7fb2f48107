"""StableAdamW: AdamW with update clipping."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def debias_beta(beta, step: mx.array) -> mx.array:
    """pytorch_optimizer's ``debias_beta``: ``(beta^t - beta) / (beta^t - 1)`` (0 at ``t = 1``)."""
    beta_t = mx.power(mx.array(beta, mx.float32), step)
    return (beta_t - beta) / (beta_t - 1.0)


@register
class StableAdamW(Optimizer):
    r"""StableAdamW: AdamW whose learning rate is divided by the RMS of the update, with optional Kahan summation.

    Moments use the bias-corrected decay rates :math:`\hat\beta_t = \beta\frac{1-\beta^{t-1}}{1-\beta^t}` (so
    no separate bias correction); the learning rate is divided by
    :math:`\rho_t = \max(1, \sqrt{\operatorname{mean}(g_t^2 / \max(v_t, \epsilon^2))})`:

    .. math::
        m_t = \hat\beta_{1,t} m_{t-1} + (1-\hat\beta_{1,t}) g_t,\quad
        v_t = \hat\beta_{2,t} v_{t-1} + (1-\hat\beta_{2,t}) g_t^2,\quad
        p_t = p_{t-1}(1 - \lambda\eta/\rho_t) - \frac{\eta}{\rho_t}\frac{m_t}{\sqrt{v_t} + \epsilon}

    ``weight_decouple=False`` folds an L2 penalty into the gradient instead.

    Paper: Wortsman et al., "Stable and low-precision training for large-scale vision-language models",
    NeurIPS 2023, arXiv:2304.13013.

    Reference: ``pytorch_optimizer.StableAdamW`` (parity-checked). Difference: ``kahan_sum`` keeps a float32
    Kahan compensation buffer for bf16/fp16 parameters (the reference keeps it in the parameter's dtype; here
    all state is float32).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.99)``.
        kahan_sum: For bf16/fp16 parameters, keep a compensation buffer so that small updates are not lost
            to rounding. Default ``True``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``1e-2``.
        weight_decouple: Decoupled weight decay at the clipped learning rate, ``p * (1 - lr / rho *
            weight_decay)``, instead of adding ``weight_decay * p`` to the gradient. Default ``True``.
        eps: Term added to the denominator (its square bounds :math:`v_t` in :math:`\rho_t`) (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
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
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
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
