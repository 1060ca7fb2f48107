"""LAMB: Adam moments with a layer-wise trust ratio."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class Lamb(Optimizer):
    r"""LAMB: Adam moments with a layer-wise trust ratio, for large-batch training.

    Adam moments with a per-tensor trust ratio :math:`\phi = \min(\|p\|, 10) / (\|u\| + \epsilon)`
    (1 where either norm is 0):

    .. math::
        m_t = \beta_1 m_{t-1} + \beta_3 g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        u_t = \frac{m_t}{\sqrt{v_t} + \epsilon} \,(+\, \lambda p),\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\, \phi\, u_t

    with :math:`\beta_3 = 1-\beta_1` when ``grad_averaging`` (else 1) and the :math:`\lambda p` term only for
    coupled weight decay. The second moment is not bias corrected (version 3 of the paper); the step size is
    divided by :math:`1-\beta_1^t` unless ``adam_debias``. ``pre_norm`` scales all gradients by
    ``min(1, max_grad_norm / (||g||_global + eps))`` (a global reduction over the whole tree). ``rectify``
    uses RAdam's rectified step size; reference quirk kept: in that mode the norm in the trust ratio is that
    of ``p - step * m / (sqrt(v) + eps)`` (the would-be new parameter), not of the update, and steps before
    the rectification threshold are skipped unless ``degenerated_to_sgd``. ``adam`` sets the trust ratio to 1.
    Decoupled weight decay (default) is applied before the update.

    Paper: You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020,
    arXiv:1904.00962.

    Reference: ``pytorch_optimizer.Lamb`` (parity-checked), including its ``adam_debias`` / ``adanorm``
    options (keyword-only here).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)`` before the update,
            instead of adding ``weight_decay * p`` to the adaptive update (inside the trust ratio). Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        rectify: Use RAdam's rectified step size. Default ``False``.
        degenerated_to_sgd: With ``rectify``, take momentum (SGD-like) steps before the variance estimate is
            tractable instead of skipping them. Default ``False``.
        n_sma_threshold: With ``rectify``, the length of the approximated simple moving average from which the
            rectified adaptive step is used. Default ``5``.
        grad_averaging: Scale the gradient's contribution to the first moment by ``1 - beta1``. Default ``True``.
        max_grad_norm: With ``pre_norm``, the global gradient norm above which gradients are scaled down
            (>= 0; 0 disables the scaling). Default ``1.0``.
        adam: Use a trust ratio of 1 (plain Adam-style steps without the second-moment bias correction).
            Default ``False``.
        pre_norm: Scale the gradients by their global norm first (see ``max_grad_norm``). Default ``False``.
        eps: Term added to the denominator and to the update norm (>= 0). Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adam_debias: Do not divide the step size by :math:`1-\beta_1^t` (keyword-only). Default ``False``.
        adanorm: AdaNorm: rescale each gradient up to the running average of its norm before the first moment
            (keyword-only). Default ``False``.
        adanorm_r: Decay rate of AdaNorm's running norm average, in [0, 1] (keyword-only). Default ``0.95``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "lamb"

    zero_compatible = True  # its cross-leaf sums go through global_sum
    # two norms (||p||, ||u||): Square + Sum each; the Adam moments and u in one kernel, the step in another
    ops_per_leaf = 6
    family = "adam"
    reference = "pytorch_optimizer.Lamb"
    shared_tunables = ("max_grad_norm",)  # one global gradient-norm clip (pre_norm)
    clamp = 10.0

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        degenerated_to_sgd: bool = False,
        n_sma_threshold: int = 5,
        grad_averaging: bool = True,
        max_grad_norm: Tunable = 1.0,
        adam: bool = False,
        pre_norm: bool = False,
        eps: Tunable = 1e-6,
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
        self._hyper("max_grad_norm", max_grad_norm, 0.0)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r, adam_debias)
        self._rectify_options(n_sma_threshold, degenerated_to_sgd, rectify)
        self.grad_averaging, self.adam, self.pre_norm = grad_averaging, adam, pre_norm

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.beta3 = hp.one_minus_beta1 if self.grad_averaging else 1.0
        hp.step_size = self.adam_step_size(hp, hp.lr, self.rectify)

    def prepare(self, gradients, parameters) -> None:
        hp = self.hp
        hp.grad_scale = 1.0
        if self.pre_norm and "max_grad_norm" not in self._zero:
            norm = mx.sqrt(self.global_sum(F.sum_of_squares(gradients)))
            hp.grad_scale = mx.minimum(hp.max_grad_norm / (norm + hp.eps), 1.0)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.pre_norm:
            g = g * hp.grad_scale
        m = hp.beta1 * state["exp_avg"] + hp.beta3 * self.adanorm_grad(g, state)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        adaptive = m / (mx.sqrt(v) + hp.eps)
        if self.rectify:
            direction = mx.where(hp.rectified, adaptive, m)
            norm_of = p - hp.step_size * direction  # reference quirk: the norm of the would-be new parameter
        else:
            direction = adaptive
            if not self.weight_decouple and self.decays():
                direction = direction + hp.weight_decay * p
            norm_of = direction
        trust = 1.0
        if not self.adam:
            w_norm = mx.minimum(F.norm_kd(p), self.clamp)  # kept dims: the trust math fuses into the leaf's kernel
            u_norm = F.norm_kd(norm_of)
            trust = mx.where((w_norm == 0) | (u_norm == 0), 1.0, w_norm / (u_norm + hp.eps))
        new = p - hp.step_size * trust * direction
        if self.rectify:
            new = mx.where(hp.step_size > 0, new, p)
        return new
