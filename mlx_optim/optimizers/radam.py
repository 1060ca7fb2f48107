"""Rectified Adam (Liu et al., 2019) with pytorch_optimizer semantics."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


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
        scale, hp.rectified = F.rectified_scale(
            hp.beta2, hp.step, self.n_sma_threshold, self.degenerated_to_sgd, hp.one_minus_beta2
        )
        step_size = hp.lr * scale
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
