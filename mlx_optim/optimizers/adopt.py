"""ADOPT (Taniguchi et al., 2024): Adam normalized by the previous second moment."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def _adopt_clip(step):
    return step**0.25


@register
class ADOPT(Optimizer):
    r"""ADOPT: Adam variant that normalizes the gradient by the *previous* second moment before the momentum.

    The gradient is normalized by the previous second moment (so the current
    gradient does not enter its own denominator), clipped, and then averaged:

    .. math::
        \tilde g_t = \operatorname{clip}\!\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c(t)\right),\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\tilde g_t,\quad p_t = p_{t-1} - \eta m_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    The first step only sets :math:`v_1 = g_1^2` (and applies decoupled weight decay).

    Paper: "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal Rate" (Taniguchi et al.), NeurIPS
    2024, arXiv:2411.02853. Reference: ``pytorch_optimizer.ADOPT``, same keywords and defaults; the options it
    reads from ``**kwargs``, ``cautious`` and ``stable_adamw``, are keyword-only arguments here. timm's ADOPT
    uses ``clip_exp=0.333``, i.e. :math:`c(t)=t^{0.333}`: pass ``clip_lambda=lambda t: t ** 0.333``.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.9999)``.
        clip_lambda: Callable mapping the float32 step array ``t`` (1 on the first update, the same index as
            pytorch_optimizer) to the clipping bound :math:`c(t)`; ``None`` disables clipping. Default
            :math:`t^{1/4}`.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``False``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: Lower bound :math:`\epsilon` (>= 0) of :math:`\sqrt{v_{t-1}}`. Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        cautious: Zero the momentum's entries whose sign disagrees with the normalized gradient's (the rest
            rescaled to keep its size). Default ``False``.
        stable_adamw: Divide the update by StableAdamW's :math:`\max(1, \sqrt{\operatorname{mean}(g^2/v)})`. Default
            ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adopt"
    family = "adam"
    reference = "pytorch_optimizer.ADOPT"
    ops_per_leaf = 2  # v' is not an input of p' (p' is normalized by the old v): mx.compile gives it its own kernel

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.9999),
        clip_lambda: Callable[[mx.array], mx.array] | None = _adopt_clip,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        cautious: bool = False,
        stable_adamw: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        if clip_lambda is not None and not callable(clip_lambda):
            raise ValueError(f"ADOPT: clip_lambda={clip_lambda!r} must be a callable or None")
        self.clip_lambda = clip_lambda
        self.cautious, self.stable_adamw = cautious, stable_adamw

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        hp.first = hp.step == 1
        if self.clip_lambda is not None:
            hp.clip = mx.array(self.clip_lambda(hp.step), mx.float32)
            hp.neg_clip = -hp.clip

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.decay_weights(p, g)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        normed = g / mx.maximum(mx.sqrt(v), hp.eps)
        if self.clip_lambda is not None:
            normed = mx.clip(normed, hp.neg_clip, hp.clip)
        # The update reads the new state (m_new but on the first step, whose update is discarded) so that they share
        # a kernel, and m_new is beta1 m + (1 - beta1) normed, not lerp's m + (1 - beta1) (normed - m) (a rounding
        # apart): one operation shallower, so that mx.compile fuses all but the new v into one kernel (mlx_optim.fusion)
        m = mx.where(hp.first, m, hp.beta1 * m + hp.one_minus_beta1 * normed)
        state["exp_avg"] = m
        update = self.apply_cautious(m, normed) if self.cautious else m
        if self.stable_adamw:
            update = update / F.stable_adamw_rms(g, v)
        state["exp_avg_sq"] = mx.where(hp.first, v + mx.square(g), hp.beta2 * v + hp.one_minus_beta2 * mx.square(g))
        return mx.where(hp.first, p, p - hp.lr * update)
