"""AdamS (Xie et al., 2023): Adam with stable weight decay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdamS(Optimizer):
    r"""AdamS: Adam with *stable* weight decay, scaled by the inverse root of the global mean second moment.

    .. math::
        \bar v_t = \frac{1}{N}\sum_{\text{all params}} \frac{v_t}{1-\beta_2^t},\quad
        p_t = p_{t-1}\Big(1 - \frac{\eta\lambda}{\sqrt{\bar v_t}+\epsilon}\Big)
              - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t/(1-\beta_2^t)}+\epsilon}

    with :math:`m_t`, :math:`v_t` Adam's moment EMAs. :math:`\bar v_t` is the mean over *every* parameter
    element, so the moments of all tensors are updated first (in :meth:`prepare`) and the step applied after.

    Paper: "On the Overlooked Pitfalls of Weight Decay and How to Mitigate Them: A Gradient-Norm Perspective"
    (Xie et al.), NeurIPS 2023. Reference: ``pytorch_optimizer.AdamS``, same keywords and defaults; its
    ``adanorm``, ``adanorm_r`` and ``adam_debias`` options (``**kwargs``) are keyword-only arguments here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Weight decay coefficient :math:`\lambda` (>= 0). Default ``1e-4``.
        weight_decouple: Stable decoupled decay as above; ``False`` adds an L2 penalty to the gradient instead.
            Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        ams_bound: Use the running maximum of :math:`v_t` (AMSGrad), in the step and in :math:`\bar v_t`.
            Default ``False``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        adanorm: AdaNorm: rescale the gradient fed to the first moment up to the running average of its norm.
            Default ``False``.
        adanorm_r: Decay rate in [0, 1] of AdaNorm's running gradient norm. Default ``0.95``.
        adam_debias: Do not divide the step by the first moment's bias correction. Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adams"
    family = "adam"
    reference = "pytorch_optimizer.AdamS"
    shared_tunables = ("beta1", "beta2", "eps")  # the moments and their global mean are updated in prepare

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 1e-4,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        ams_bound: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        adanorm: bool = False,
        adanorm_r: float = 0.95,
        adam_debias: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self._adanorm_options(adanorm, adanorm_r, adam_debias)
        self.ams_bound = ams_bound

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", ams="max_exp_avg_sq" if self.ams_bound else None)

    def step_scalars(self, hp) -> None:
        hp.step_size = self.adam_step_size(hp, hp.lr, rectify=False)
        hp.bc2 = hp.bias_correction("beta2")

    def _moments(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        """Update one tensor's moments; return the sum of its (AMS-bounded) second moment."""
        hp = self.hp
        dtype = self.compute_dtype(p)
        g, p = g.astype(dtype), p.astype(dtype)
        if self.maximize:
            g = -g
        if not self.weight_decouple:
            _, g = self.apply_weight_decay(p, g, decouple=False)
        m = hp.ema(state["exp_avg"], self.adanorm_grad(g, state), "beta1")
        v = hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.ams_bound:
            v = self.apply_amsgrad(state, v)
        return mx.sum(v.astype(mx.float32))

    def _walk(self, g: Any, p: Any, s: Any, path: str) -> tuple[Any, int]:
        if isinstance(g, dict):
            parts = [self._walk(g[k], p[k], s[k], f"{path}{k}.") for k in g]
        elif isinstance(g, (list, tuple)):
            parts = [self._walk(a, b, c, f"{path}{i}.") for i, (a, b, c) in enumerate(zip(g, p, s, strict=False))]
        else:
            self._leaf_path = path[:-1]
            return self._moments(g, p, s), g.size
        return sum((t for t, _ in parts), mx.array(0.0, mx.float32)), sum(n for _, n in parts)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        total, size = self._walk(gradients, parameters, self.state, "")
        if size == 0:
            raise ValueError("AdamS: the gradient tree has no parameters")
        self.hp.decay_ratio = 1.0 / (mx.sqrt(total / self.hp.bc2 / size) + self.hp.eps)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, ratio=hp.decay_ratio)
        v = state["max_exp_avg_sq"] if self.ams_bound else state["exp_avg_sq"]
        return p - hp.step_size * state["exp_avg"] / (mx.sqrt(v / hp.bc2) + hp.eps)
