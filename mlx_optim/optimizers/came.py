"""CAME (Luo et al., 2023): confidence-guided adaptive memory-efficient optimization."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.factored import clip_by_rms, factored_rsqrt
from mlx_optim.registry import register


@register
class CAME(Optimizer):
    r"""CAME: Adafactor with momentum, rescaled by a factored estimate of the update's instability (confidence).

    Adafactor's factored second moment (rank >= 2; full for rank < 2) with a first moment, and a second
    factored EMA of the squared *instability* :math:`(u_t - m_t)^2` that rescales the momentum:

    .. math::
        u_t = g_t \odot \hat V_t^{-1/2} / \max(1, \mathrm{rms}(\cdot)/d),\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) u_t \\
        S_t = \beta_3 S_{t-1} + (1-\beta_3)\big((u_t - m_t)^2 + \epsilon_2\big) \text{ (factored)},\quad
        p_t = p_{t-1} - \eta\, m_t \odot \hat S_t^{-1/2}

    where :math:`\hat V_t` uses EMAs (rate :math:`\beta_2`) of :math:`g^2 + \epsilon_1` and :math:`d` is
    ``clip_threshold``. Rank < 2 tensors skip the confidence factor (:math:`p_t = p_{t-1} - \eta m_t`).
    Weight decay is decoupled by default.

    Paper: "CAME: Confidence-guided Adaptive Memory Efficient Optimization" (Luo et al.), ACL 2023,
    arXiv:2307.02047. Reference: ``pytorch_optimizer.CAME``, same keywords and defaults. Reference quirk kept:
    ``ams_bound`` keeps the running maximum of :math:`\hat V_t` and uses :math:`\hat V_{\max}/\beta_2` (a
    division by :math:`\beta_2`, not a bias correction).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``2e-4``.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`: decay rates of the momentum and the squared gradient (each
            in [0, 1)) and of the squared instability (in [0, 1]). Default ``(0.9, 0.999, 0.9999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        clip_threshold: Maximum RMS :math:`d` of the preconditioned update :math:`u_t`. Default ``1.0``.
        ams_bound: Use the running maximum of :math:`\hat V_t` (divided by :math:`\beta_2`). Default ``False``.
        eps1: :math:`\epsilon_1` (>= 0) added to the squared gradient. Default ``1e-30``.
        eps2: :math:`\epsilon_2` (>= 0) added to the squared instability. Default ``1e-16``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "came"
    family = "memory-efficient"
    reference = "pytorch_optimizer.CAME"

    def __init__(
        self,
        learning_rate: Tunable = 2e-4,
        betas: Sequence[float] = (0.9, 0.999, 0.9999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        clip_threshold: Tunable = 1.0,
        ams_bound: bool = False,
        eps1: Tunable = 1e-30,
        eps2: Tunable = 1e-16,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        betas = tuple(betas)
        if len(betas) != 3:
            raise ValueError(f"CAME: betas={betas!r} must have 3 values")
        self._betas(betas[:2], 2)
        self._hyper("beta3", betas[2], 0.0, 1.0, "[]")
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("clip_threshold", clip_threshold)
        self._hyper("eps1", eps1, 0.0)
        self._hyper("eps2", eps2, 0.0)
        self.weight_decouple, self.fixed_decay, self.ams_bound = weight_decouple, fixed_decay, ams_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        shape = parameter.shape
        state["exp_avg"] = self.zeros(parameter)
        if len(shape) >= 2:
            for key in ("exp_avg_sq", "exp_avg_res"):
                state[f"{key}_row"] = self.zeros(parameter, shape[:-1])
                state[f"{key}_col"] = self.zeros(parameter, shape[:-2] + shape[-1:])
        else:
            state["exp_avg_sq"] = self.zeros(parameter)
        if self.ams_bound:
            state["exp_avg_sq_hat"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple, fixed=self.fixed_decay)
        sq = mx.square(g) + hp.eps1
        factored = g.ndim >= 2
        if factored:
            row = hp.ema(state["exp_avg_sq_row"], mx.mean(sq, axis=-1), "beta2")
            col = hp.ema(state["exp_avg_sq_col"], mx.mean(sq, axis=-2), "beta2")
            state["exp_avg_sq_row"], state["exp_avg_sq_col"] = row, col
            inv_sqrt_v = factored_rsqrt(row, col)
        else:
            v = hp.ema(state["exp_avg_sq"], sq, "beta2")
            state["exp_avg_sq"] = v
            inv_sqrt_v = mx.rsqrt(v)
        if self.ams_bound:
            v_hat = self.apply_amsgrad(state, 1.0 / inv_sqrt_v, "exp_avg_sq_hat")
            inv_sqrt_v = mx.rsqrt(v_hat / hp.beta2)
        update = clip_by_rms(inv_sqrt_v * g, hp.clip_threshold)
        m = F.torch_lerp(state["exp_avg"], update, hp.one_minus_beta1)
        state["exp_avg"] = m
        if not factored:
            return p - hp.lr * m
        res = mx.square(update - m) + hp.eps2
        row = hp.ema(state["exp_avg_res_row"], mx.mean(res, axis=-1), "beta3")
        col = hp.ema(state["exp_avg_res_col"], mx.mean(res, axis=-2), "beta3")
        state["exp_avg_res_row"], state["exp_avg_res_col"] = row, col
        return p - hp.lr * factored_rsqrt(row, col) * m
