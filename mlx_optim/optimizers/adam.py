"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), as torch.optim."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import kernels, native  # fused GPU kernels (dispatch in update_single); int8 CPU step
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


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
    r"""Adam: adaptive moment estimation, a step along the bias-corrected first moment over the root second moment.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\, \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    ``weight_decay`` is an L2 penalty added to the gradient unless ``decoupled_weight_decay`` (then it is
    AdamW). ``amsgrad`` uses the running maximum of :math:`v_t`. On Metal and CUDA the update runs as one
    fused kernel (:mod:`mlx_optim.kernels`), with the same arithmetic.

    Paper: "Adam: A Method for Stochastic Optimization" (Kingma & Ba), ICLR 2015. Reference:
    ``torch.optim.Adam``, same keywords and defaults; torch's ``foreach``, ``capturable``, ``differentiable``
    and ``fused`` execution options have no counterpart. Unlike ``mlx.optimizers.Adam`` the bias correction is
    always on, as in PyTorch.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        weight_decay: Weight decay coefficient (>= 0): an L2 penalty, or decoupled with
            ``decoupled_weight_decay``. Default ``0.0``.
        amsgrad: Use the running maximum of :math:`v_t` (AMSGrad). Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        decoupled_weight_decay: Decoupled (AdamW) decay ``p <- p (1 - lr wd)`` instead of the L2 penalty.
            Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
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
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", ams="max_exp_avg_sq" if self.amsgrad else None)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.inv_bc2_sqrt = mx.rsqrt(hp.bias_correction("beta2"))
        hp.k1, hp.k2 = hp.beta1 / hp.one_minus_beta1, hp.beta2 / hp.one_minus_beta2

    def quantized_update(self, gradient, parameter, g, state):
        # state_dtype="int8" on the CPU: one native pass per leaf (mlx_optim.native), when built and covered
        if type(self).update_single is not Adam.update_single:
            return None
        return native.adam_leaf(self, gradient, parameter, g, state)

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
    r"""AdamW: Adam with decoupled weight decay, ``p <- p (1 - lr wd)`` before the Adam step.

    The same update as :class:`Adam` with ``decoupled_weight_decay=True`` and a default ``weight_decay`` of
    ``1e-2``.

    Paper: "Decoupled Weight Decay Regularization" (Loshchilov & Hutter), ICLR 2019. Reference:
    ``torch.optim.AdamW``, same keywords and defaults; torch's ``foreach``, ``capturable``,
    ``differentiable`` and ``fused`` execution options have no counterpart.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        weight_decay: Decoupled weight decay coefficient (>= 0). Default ``1e-2``.
        amsgrad: Use the running maximum of :math:`v_t` (AMSGrad). Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
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
