"""AdamWSN (Nguyen et al., 2024): AdamW with subset-norm second moments."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.subset_norm import closest_smaller_divisor
from mlx_optim.registry import register


@register
class AdamWSN(Optimizer):
    r"""AdamWSN: AdamW with optional subset-norm second moments (one per subset of ``k`` entries).

    With ``sn`` each tensor is viewed as ``(numel / k, k)`` and one second moment is kept per row of ``k``
    entries (the sum of their squared gradients); ``k`` is the largest divisor of ``numel`` not above
    ``subset_size`` (or ``int(sqrt(numel) / |subset_size|)`` when it is negative):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \textstyle\sum_{\text{row}} g_t^2,\quad
        p_t = p_{t-1} - \eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\frac{m_t}{\sqrt{v_t} + \epsilon},\quad
        p_t \leftarrow p_t(1-\eta\lambda)

    Without ``sn`` it is AdamW with the decay applied after the step.

    Paper: "Subset-Norm and Subspace-Momentum: Faster Memory-Efficient Adaptive Optimization with Convergence
    Guarantees" (Nguyen et al., 2024). Reference: ``pytorch_optimizer.AdamWSN``, same keywords and defaults;
    ``sn`` is a parameter-group option there (default off) and a keyword-only flag for the whole optimizer
    here. Reference quirk kept: ``weight_decouple=False`` applies no weight decay at all (the penalty is added
    to the gradient after it was used).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``0.0``.
        weight_decouple: Decoupled decay after the step; ``False`` applies no decay (reference quirk). Default
            ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        subset_size (int): With ``sn``, the subset size ``k`` (the largest divisor of the tensor size not above
            it), or for a negative value ``-d``, ``int(sqrt(numel) / d)``; 0 is invalid. Default ``-1``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        sn: Keep subset-norm second moments instead of one per entry. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adamwsn"
    family = "adam"
    reference = "pytorch_optimizer.AdamWSN"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        subset_size: int = -1,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        sn: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        if sn and int(subset_size) == 0:
            raise ValueError("AdamWSN: subset_size=0 is not allowed; use a positive size or a negative divisor")
        self.subset_size, self.sn = int(subset_size), sn

    def _subset(self, size: int) -> int:
        k = self.subset_size if self.subset_size > 0 else int(math.sqrt(size) / abs(self.subset_size))
        return closest_smaller_divisor(size, k)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        if self.sn:
            size = parameter.size
            state["exp_avg_sq"] = self.zeros(parameter, (size // self._subset(size), 1))
        else:
            state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        if self.sn:
            rows = state["exp_avg_sq"].shape[0]
            second = mx.sum(mx.square(g.reshape(rows, -1)), axis=1, keepdims=True)
        else:
            second = mx.square(g)
        v = F.lerp(state["exp_avg_sq"], second, hp.one_minus_beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        denom = mx.sqrt(v) + hp.eps
        update = (m.reshape(denom.shape[0], -1) / denom).reshape(p.shape) if self.sn else m / denom
        p = p - hp.step_size * update
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay)
        return p
