"""AdaGC (Wang et al., 2025): Adam with adaptive, per-tensor gradient clipping."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register


@register
class AdaGC(Optimizer):
    r"""AdaGC: Adam with adaptive gradient clipping, each tensor clipped relative to its own history of norms.

    During warmup (``step < warmup_steps``, and always on the first step) the
    gradient is clipped to a global norm ``lambda_abs`` and the per-tensor
    threshold :math:`\gamma` keeps the minimum clipped norm; afterwards each tensor
    is clipped relative to its own history:

    .. math::
        h_t = \min\Big(\frac{\lambda_{rel} \max(\gamma_{t-1}, \epsilon)}{\max(\lVert g_t\rVert, \epsilon)}, 1\Big),\quad
        \hat g_t = h_t g_t,\quad \gamma_t = \beta \gamma_{t-1} + (1-\beta) \lVert \hat g_t \rVert

    and :math:`\hat g_t` drives a bias-corrected Adam step.

    Paper: "AdaGC: Improving Training Stability for Large Language Model Pretraining" (Wang et al., 2025),
    arXiv:2502.11034. Reference: ``pytorch_optimizer.AdaGC``, same keywords and defaults. Quirk kept for
    parity: with L2 weight decay (``weight_decouple=False``) the reference recomputes the warmup global norm
    before each tensor, over gradients of which the already-visited tensors (including the current one) have
    the L2 term folded in; this order-dependent norm is reproduced.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of Adam's first and second moments.
            Default ``(0.9, 0.999)``.
        beta: Decay rate :math:`\beta` in [0, 1) of the clipping threshold :math:`\gamma`'s moving average.
            Default ``0.98``.
        lambda_abs: Global-norm clipping threshold (> 0) during warmup. Default ``1.0``.
        lambda_rel: Relative clipping factor :math:`\lambda_{rel}` (> 0) after warmup. Default ``1.05``.
        warmup_steps (int): Number of steps (>= 0) with absolute clipping. Default ``100``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.1``.
        weight_decouple: Decoupled (AdamW-style) decay ``p <- p (1 - lr wd)`` instead of an L2 penalty added
            to the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the learning rate. Default ``False``.
        eps: :math:`\epsilon` (>= 0) in the clipping ratio and Adam's denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adagc"
    family = "adam"
    reference = "pytorch_optimizer.AdaGC"
    shared_tunables = ("weight_decay",)  # the warmup's global norm of the decayed gradients, in prepare

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        beta: Tunable = 0.98,
        lambda_abs: Tunable = 1.0,
        lambda_rel: Tunable = 1.05,
        warmup_steps: int = 100,
        weight_decay: Tunable = 1e-1,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("beta", beta, 0.0, 1.0, "[)")
        self._hyper("lambda_abs", lambda_abs, 0.0, None, "()")
        self._hyper("lambda_rel", lambda_rel, 0.0, None, "()")
        self._check("warmup_steps", warmup_steps, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._hyper("eps", eps, 0.0)
        self.warmup_steps = int(warmup_steps)
        self._warmup_norms: list[mx.array] = []

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")
        state["gamma"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.warmup = (hp.step < self.warmup_steps) | (hp.step == 1)

    def prepare(self, gradients: dict, parameters: dict) -> None:
        # The global gradient norm the reference sees before each tensor during warmup.
        items = leaves(gradients, parameters, self.state)
        raw = [mx.sum(mx.square(g.astype(mx.float32))) for _, g, _, _ in items]
        l2 = not self.weight_decouple and "weight_decay" not in self._zero
        if not l2:
            total = mx.sqrt(sum(raw[1:], raw[0]))
            self._warmup_norms = [total] * len(items)
            return
        decayed = []
        for (path, g, p, _), r in zip(items, raw, strict=True):
            if self.decay_filter is not None and not self.decay_filter(path):
                decayed.append(r)
                continue
            g32 = -g.astype(mx.float32) if self.maximize else g.astype(mx.float32)
            decayed.append(mx.sum(mx.square(g32 + self.hp.weight_decay * p.astype(mx.float32))))
        self._warmup_norms = [
            mx.sqrt(sum(decayed[: i + 1] + raw[i + 1 :], mx.array(0.0, mx.float32))) for i in range(len(items))
        ]

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        self._leaf_index = 0
        return super().apply_gradients(gradients, parameters, loss=loss)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        global_norm = self._warmup_norms[self._leaf_index]
        self._leaf_index += 1
        p, g = self.decay_weights(p, g)
        gamma = state["gamma"]
        # warmup: absolute clipping by the global norm; gamma keeps the minimum clipped norm
        g_warm = g * mx.minimum(hp.lambda_abs / (global_norm + hp.eps), 1.0)
        warm_norm = F.norm(g_warm)
        gamma_warm = mx.where(hp.step == 1, warm_norm, mx.minimum(gamma, warm_norm))
        # afterwards: relative clipping by the tensor's own history
        h = mx.minimum(hp.lambda_rel * mx.maximum(gamma, hp.eps) / mx.maximum(F.norm(g), hp.eps), 1.0)
        g_rel = g * h
        gamma_rel = F.lerp(gamma, F.norm(g_rel), hp.one_minus_beta)
        g_hat = mx.where(hp.warmup, g_warm, g_rel)
        state["gamma"] = mx.where(hp.warmup, gamma_warm, gamma_rel)
        m = F.lerp(state["exp_avg"], g_hat, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g_hat)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return p - hp.step_size * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)
