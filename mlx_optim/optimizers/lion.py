"""Lion: sign of an interpolated momentum."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim import kernels  # fused GPU kernels (dispatch in Lion.update_single)
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Lion(Optimizer):
    r"""Lion: evolved sign momentum; every coordinate moves by the learning rate.

    .. math::
        u_t = \operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t),\quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t,\quad p_t = p_{t-1} - \eta u_t

    Weight decay is decoupled by default and applied before the update. ``use_gc`` centralizes the gradient
    first; with ``adanorm`` the momentum :math:`m_t` takes the AdaNorm-rescaled gradient (the sign uses the
    raw one); ``cautious`` masks the update.

    Paper: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023, arXiv:2302.06675.

    Reference: ``pytorch_optimizer.Lion`` (parity-checked), including its ``use_gc`` / ``adanorm`` /
    ``cautious`` options (keyword-only here).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step); sign updates
            want a learning rate 3-10x smaller than AdamW's. Default ``1e-4``.
        betas: ``(beta1, beta2)``: :math:`\beta_1` interpolates momentum and gradient for the sign,
            :math:`\beta_2` is the momentum's decay rate; each in [0, 1). Default ``(0.9, 0.99)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        use_gc: Gradient centralization: subtract from each gradient of a tensor with ``ndim > 1`` its mean
            over all axes but the first (keyword-only). Default ``False``.
        adanorm: AdaNorm: rescale the gradient entering the momentum up to the running average of its norm
            (keyword-only). Default ``False``.
        adanorm_r: Decay rate of AdaNorm's running norm average, in [0, 1] (keyword-only). Default ``0.95``.
        cautious: Zero the update where its sign disagrees with the gradient and rescale the rest
            (keyword-only). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "lion"
    family = "sign"
    reference = "pytorch_optimizer.Lion"
    # m' is not an input of p' (the sign interpolates with the old m, with another beta), so mx.compile gives
    ops_per_leaf = 2  # each its own kernel

    def __init__(
        self,
        learning_rate: Tunable = 1e-4,
        betas: Sequence[float] = (0.9, 0.99),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        maximize: bool = False,
        *,
        use_gc: bool = False,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        cautious: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._adanorm_options(adanorm, adanorm_r)
        self.use_gc, self.cautious = use_gc, cautious

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        # -- fused kernel (mlx_optim.kernels.LION): Metal/CUDA only; None on the CPU, where the math below runs
        fused = kernels.lion(self, g, p, state)
        if fused is not None:
            return fused
        # -- end fused kernel
        if self.use_gc:
            g = self.apply_gc(g)
        p, g = self.decay_weights(p, g)
        m = state["exp_avg"]
        update = F.sign(hp.beta1 * m + hp.one_minus_beta1 * g)
        state["exp_avg"] = hp.beta2 * m + hp.one_minus_beta2 * self.adanorm_grad(g, state)
        if self.cautious:
            update = self.apply_cautious(update, g)
        return p - hp.lr * update
