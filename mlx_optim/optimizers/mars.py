"""MARS: variance-reduced gradients fed to AdamW, Lion or Shampoo-like updates."""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import newton_schulz5
from mlx_optim.registry import register


def mars_correction(g: mx.array, last_grad: mx.array, gamma, beta1) -> mx.array:
    """MARS's variance-reduced gradient ``c = g + gamma * beta1 / (1 - beta1) * (g - g_prev)``, norm-clipped to 1."""
    c = (g - last_grad) * (gamma * (beta1 / (1.0 - beta1))) + g
    c_norm = F.norm(c)
    return mx.where(c_norm > 1.0, c / c_norm, c)


@register
class MARS(Optimizer):
    r"""MARS: a variance-reduced (STORM-like) gradient correction fed to AdamW, Lion or Shampoo-like updates.

    For matrices (all tensors with ``optimize_1d``) the gradient is replaced by the variance-reduced,
    norm-clipped :math:`c_t = g_t + \gamma\frac{\beta_1}{1-\beta_1}(g_t - g_{t-1})` and fed to an AdamW
    (``mars_type="adamw"``), Lion (sign of the momentum) or Shampoo-like (Newton-Schulz orthogonalised
    momentum, computed in bfloat16 as the reference does) update:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) c_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) c_t^2,\quad
        p_t = p_{t-1} - \eta \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t + 10^{-15}}/\sqrt{1-\beta_2^t} + \epsilon}

    Other tensors use plain AdamW with ``betas_1d``, ``lr_1d`` and ``weight_decay_1d``. ``ams_bound`` keeps
    the running maximum of :math:`v_t`; ``cautious`` masks the momentum where it disagrees with the gradient.
    Reference quirk kept: coupled weight decay (``weight_decouple=False``) only alters the stored previous
    gradient (it is added after the update is computed).

    Paper: Yuan et al., "MARS: Unleashing the Power of Variance Reduction for Training Large Models",
    arXiv:2411.10438, 2024.

    Reference: ``pytorch_optimizer.MARS`` (parity-checked). Deviation: ``lr_1d`` is its own tunable; the
    reference stores ``lr_1d / lr`` at construction and multiplies it by the current ``lr``, which differs
    only when the learning rate is changed after construction.

    Args:
        learning_rate: Step size :math:`\eta` of the MARS tensors, a float or a schedule (a callable of the
            step). Default ``3e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs of the MARS tensors, each
            in [0, 1); ``beta1`` also weights the correction. Default ``(0.95, 0.99)``.
        gamma: Strength :math:`\gamma` of the gradient correction (>= 0). Default ``0.025``.
        mars_type: ``'adamw'``, ``'lion'`` or ``'shampoo'``: the update the corrected gradient feeds.
            Default ``'adamw'``.
        optimize_1d: Apply MARS to tensors with fewer than two dimensions too (otherwise they take AdamW
            steps with the ``_1d`` settings). Default ``False``.
        lr_1d: Step size of the AdamW steps of the other tensors, a float or a schedule. Default ``3e-3``.
        betas_1d: ``(beta1, beta2)`` of those AdamW steps, each in [0, 1). Default ``(0.9, 0.95)``.
        weight_decay: Weight decay coefficient of the MARS tensors (>= 0). Default ``0.0``.
        weight_decay_1d: Weight decay coefficient of the other tensors (>= 0). Default ``0.1``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``; ``False`` only
            changes the stored previous gradient (see above). Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        ams_bound: Divide by the running maximum of the second moment (AMSGrad). Default ``False``.
        cautious: Zero the momentum where its sign disagrees with the gradient and rescale the rest.
            Default ``False``.
        eps: Term added to the denominator (>= 0); also the Newton-Schulz normalization's epsilon.
            Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "mars"
    family = "adam"
    reference = "pytorch_optimizer.MARS"

    def __init__(
        self,
        learning_rate: Tunable = 3e-3,
        betas: Sequence[float] = (0.95, 0.99),
        gamma: Tunable = 0.025,
        mars_type: str = "adamw",
        optimize_1d: bool = False,
        lr_1d: Tunable = 3e-3,
        betas_1d: Sequence[float] = (0.9, 0.95),
        weight_decay: Tunable = 0.0,
        weight_decay_1d: Tunable = 1e-1,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        cautious: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("lr_1d", lr_1d, 0.0)
        self._betas(betas, 2)
        betas_1d = tuple(betas_1d)
        if len(betas_1d) != 2:
            raise ValueError(f"MARS: betas_1d={betas_1d!r} must have 2 values")
        self._hyper("beta1_1d", betas_1d[0], 0.0, 1.0, "[)")
        self._hyper("beta2_1d", betas_1d[1], 0.0, 1.0, "[)")
        self._choice("mars_type", mars_type, ("adamw", "lion", "shampoo"))
        self._hyper("gamma", gamma, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("weight_decay_1d", weight_decay_1d, 0.0)
        self._hyper("eps", eps, 0.0)
        self.mars_type, self.optimize_1d = mars_type, optimize_1d
        self.ams_bound, self.cautious = ams_bound, cautious

    def init_single(self, parameter: mx.array, state: dict) -> None:
        ams = "max_exp_avg_sq" if self.ams_bound else None
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", "last_grad", ams=ams)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.bc1_1d = F.bias_correction(hp.beta1_1d, hp.step)
        hp.bc2_sqrt_1d = mx.sqrt(F.bias_correction(hp.beta2_1d, hp.step))

    def _adam_direction(self, m, v, state, bc1, bc2_sqrt):
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        return m / (F.ams_bound_denom(v, self.hp.eps) / bc2_sqrt * bc1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        mixed = self.optimize_1d or g.ndim >= 2
        if mixed:
            beta1, beta2, lr, wd = hp.beta1, hp.beta2, hp.lr, hp.weight_decay
            c = mars_correction(g, state["last_grad"], hp.gamma, beta1)
        else:
            beta1, beta2, lr, wd = hp.beta1_1d, hp.beta2_1d, hp.lr_1d, hp.weight_decay_1d
            c = g
        m = F.lerp(state["exp_avg"], c, 1 - beta1)
        state["exp_avg"] = m
        update = self.apply_cautious(m, g) if self.cautious else m
        if mixed and self.mars_type == "lion":
            update = F.sign(update)
        elif mixed and self.mars_type == "shampoo" and g.ndim >= 2:
            factor = math.sqrt(max(1.0, g.shape[0] / g.shape[1]))
            flat = update.reshape(update.shape[0], -1) * (1.0 / (1.0 - beta1))
            update = (newton_schulz5(flat, eps=hp.eps) * factor).astype(g.dtype).reshape(g.shape)
        else:
            v = beta2 * state["exp_avg_sq"] + (1 - beta2) * mx.square(c)
            state["exp_avg_sq"] = v
            bc1, bc2_sqrt = (hp.bc1, hp.bc2_sqrt) if mixed else (hp.bc1_1d, hp.bc2_sqrt_1d)
            update = self._adam_direction(update, v, state, bc1, bc2_sqrt)
        if self.decay_filter is None or self.decay_filter(self._leaf_path):
            if self.weight_decouple:
                p = F.decoupled_decay(p, lr, wd, fixed=self.fixed_decay)
            else:
                g = F.coupled_decay(g, p, wd)  # quirk: only the stored previous gradient sees it
        state["last_grad"] = g
        return p - lr * update
