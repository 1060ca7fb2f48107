"""AdaShift (Zhou et al., 2019): Adam whose second moment uses a gradient ``keep_num`` steps old."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class AdaShift(Optimizer):
    r"""AdaShift: Adam whose second moment uses a gradient ``keep_num`` steps old, decorrelated from the step.

    The last ``keep_num`` (:math:`n`) gradients are kept in a ring buffer
    ``state["grad_queue"]`` of shape ``(n, *p.shape)``. While it fills, only the
    first moment accumulates (the parameters do not move); afterwards, with the oldest gradient
    :math:`g_{t-n}`,

    .. math::
        m_t = \beta_1 (m_{t-1} - w_{first}\, g_{t-n}) + w_{last}\, g_t,\quad
        v_t = \operatorname{lerp}(v_{t-1}, \phi(g_{t-n}^2), 1-\beta_2),\quad
        p_t = p_{t-1} - \eta\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^{\max(1, t-n)})} + \epsilon}

    with :math:`w_{last} = 1/\sum_{i<n}\beta_1^i`, :math:`w_{first} = \beta_1^{n-1} w_{last}`
    and :math:`\phi` = ``reduce_func``.

    Paper: "AdaShift: Decorrelation and Convergence of Adaptive Learning Rate Methods" (Zhou et al.), ICLR 2019,
    arXiv:1810.00143. Reference: ``pytorch_optimizer.AdaShift``, same keywords and defaults (``torch.max`` is
    ``mx.max`` here); its ``cautious`` option (``**kwargs``) is a keyword-only argument here.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        keep_num (int): Number :math:`n` (> 0) of past gradients kept; the second moment uses the oldest.
            Default ``10``.
        reduce_func: Function :math:`\phi` applied to the old squared gradient before it enters :math:`v`
            (``mx.max``: the whole tensor's maximum, one scalar per tensor); ``None`` for the identity
            (element-wise). Default ``mx.max``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-10``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        cautious: Zero the update's entries whose sign disagrees with the gradient's (the rest rescaled to keep
            its size). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adashift"
    family = "adam"
    reference = "pytorch_optimizer.AdaShift"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        keep_num: int = 10,
        reduce_func: Callable[[mx.array], mx.array] | None = mx.max,
        eps: Tunable = 1e-10,
        maximize: bool = False,
        *,
        cautious: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._check("keep_num", keep_num, 0.0, None, "()")
        self._hyper("eps", eps, 0.0)
        self.keep_num = int(keep_num)
        self.reduce_func = reduce_func if reduce_func is not None else (lambda x: x)
        self.cautious = cautious

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grad_queue"] = self.zeros(parameter, (self.keep_num, *parameter.shape))
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq")

    def step_scalars(self, hp) -> None:
        n = self.keep_num
        weight_sum = sum(mx.power(hp.beta1, float(i)) for i in range(n))
        hp.first_grad_weight = mx.power(hp.beta1, float(n - 1)) / weight_sum
        hp.last_grad_weight = 1.0 / weight_sum
        hp.bc2 = hp.bias_correction("beta2", mx.maximum(hp.step - n, 1.0))
        hp.ready = hp.step > n
        hp.slot = mx.remainder(self.state["step"] - 1, n).astype(mx.int32).reshape(1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        queue = state["grad_queue"]
        offset = mx.take(queue, hp.slot, axis=0)[0]
        state["grad_queue"] = mx.slice_update(queue, g[None].astype(queue.dtype), hp.slot, axes=(0,))
        m_prev = mx.where(hp.ready, state["exp_avg"] - hp.first_grad_weight * offset, state["exp_avg"])
        m = hp.beta1 * m_prev + hp.last_grad_weight * g
        v = F.lerp(state["exp_avg_sq"], self.reduce_func(mx.square(offset)), hp.one_minus_beta2)
        state["exp_avg"] = m
        state["exp_avg_sq"] = mx.where(hp.ready, v, state["exp_avg_sq"])
        update = self.apply_cautious(m, g) if self.cautious else m
        new_p = p - hp.lr * update / (mx.sqrt(v / hp.bc2) + hp.eps)
        return mx.where(hp.ready, new_p, p)
