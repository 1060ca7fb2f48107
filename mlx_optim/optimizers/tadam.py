"""TAdam: Adam with a Student-t robust first moment (holocron)."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


def tadam_moment(g, m, v, big_w, beta1, eps, dof, numel):
    """TAdam's Student-t weighted first moment. Returns ``(m, W)``.

    ``w = (dof + d) / (dof + sum((g - m)^2 / (v + eps)))``,
    ``m <- (W m + w g) / (W + w)``, ``W <- W (2 beta1 - 1) / beta1 + w``.
    """
    w = (dof + numel) / (dof + mx.sum(mx.square(g - m) / (v + eps)))
    m = m * (big_w / (big_w + w)) + w * g / (big_w + w)
    return m, big_w * ((2 * beta1 - 1) / beta1) + w


@register
class TAdam(Optimizer):
    r"""TAdam: Adam with a Student-t weighted, outlier-robust first moment, as in holocron.

    Follows holocron's code (``holocron.optim.TAdam``), which differs from its docs:

    .. math::
        w_t = \frac{\nu + d}{\nu + \sum_j (g_t^j - m_{t-1}^j)^2 / (v_{t-1}^j + \epsilon)},\quad
        m_t = \frac{W_{t-1} m_{t-1} + w_t g_t}{W_{t-1} + w_t},\quad
        W_t = \frac{2\beta_1 - 1}{\beta_1} W_{t-1} + w_t \\
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    with :math:`W_0 = \beta_1/(1-\beta_1)`, :math:`d` the number of elements and ``dof`` :math:`\nu`
    defaulting to :math:`d`. Code-vs-doc differences (we follow the code): :math:`v` uses :math:`g_t^2` (the
    docs say :math:`g_t - g_{t-1}`), and :math:`W` decays by :math:`(2\beta_1-1)/\beta_1` (not in the docs).
    Step 1 is a no-op because :math:`v_0=0` makes :math:`w_1\approx 0`.

    Paper: Ilboudo et al., "TAdam: A Robust Stochastic Gradient Optimizer", arXiv:2003.00179, 2020.

    Reference: ``holocron.optim.TAdam``, through a torch transcription (parity-checked). No ``maximize``
    (holocron has none).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2)``, decay rates of the first- and second-moment EMAs, each in [0, 1).
            Default ``(0.9, 0.999)``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        weight_decay: L2 penalty added to the gradient (>= 0). Default ``0.0``.
        amsgrad: Divide by the running maximum of the second moment. Default ``False``.
        dof: Degrees of freedom :math:`\nu` of the Student-t (> 0); ``None`` uses the tensor's number of
            elements. Default ``None``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "tadam"
    family = "adam"
    reference = "holocron.optim.TAdam (torch transcription)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        amsgrad: bool = False,
        dof: float | None = None,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._hyper("eps", eps, 0.0)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        if dof is not None:
            self._check("dof", dof, 0.0, None, "(]")
        self.amsgrad, self.dof = amsgrad, dof

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", ams="max_exp_avg_sq" if self.amsgrad else None)
        beta1 = self.tunable("beta1")
        state["W_t"] = (beta1 / (1 - beta1)).astype(mx.float32)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=False)
        dof = float(g.size) if self.dof is None else self.dof
        m, state["W_t"] = tadam_moment(
            g, state["exp_avg"], state["exp_avg_sq"], state["W_t"], hp.beta1, hp.eps, dof, g.size
        )
        v = hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.amsgrad:
            v = self.apply_amsgrad(state, v)
        return p - hp.step_size * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)
