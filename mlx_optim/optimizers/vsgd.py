"""VSGD: variational stochastic gradient descent."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.registry import register


@register
class VSGD(Optimizer):
    r"""VSGD: variational stochastic gradient descent, SGD on a Bayesian-filtered estimate of the true gradient.

    The true gradient :math:`\mu_g` is estimated by a Bayesian filter from the noisy gradient, with
    gamma-distributed precisions whose rate parameters :math:`b_g, \hat b_g` are averaged with weights
    :math:`\rho_{1,2} = t^{-\tau_{1,2}}`:

    .. math::
        \sigma_g = b_g / a,\ \hat\sigma_g = \hat b_g / a,\quad
        \mu_t = \frac{\hat\sigma_g \mu_{t-1} + \sigma_g g_t}{\sigma_g + \hat\sigma_g},\quad
        m_t = \mu_t^2 + \frac{\sigma_g \hat\sigma_g}{\sigma_g + \hat\sigma_g} \\
        b_g \leftarrow \operatorname{lerp}(b_g, b_0 + m_t - 2\mu_t\mu_{t-1} + \mu_{t-1}^2, \rho_1),\quad
        \hat b_g \leftarrow \operatorname{lerp}(\hat b_g, \hat b_0 + m_t - 2 g_t \mu_t + g_t^2, \rho_2) \\
        p_t = p_{t-1} - \eta\, \mu_t / (\sqrt{m_t} + \epsilon)

    with prior :math:`a = 2 p_s + 1 + 10^{-4}`, :math:`b_0 = 2 p_s`, :math:`\hat b_0 = 2\,\text{ghattg}\, p_s`
    (first step: :math:`\sigma = b_0/(a-1)`). Weight decay is decoupled by default.

    Paper: Chen et al., "Variational Stochastic Gradient Descent for Deep Neural Networks", ICML 2024.

    Reference: ``pytorch_optimizer.VSGD`` (parity-checked).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-1``.
        ghattg: Prior ratio of the observation noise to the gradient's own variance (``ghattg`` in
            :math:`\hat b_0`; >= 0). Default ``30.0``.
        ps: Prior strength :math:`p_s` (>= 0). Default ``1e-8``.
        tau1: Decay exponent :math:`\tau_1` of the weight :math:`\rho_1 = t^{-\tau_1}` of :math:`b_g`
            (>= 0). Default ``0.81``.
        tau2: Decay exponent :math:`\tau_2` of the weight :math:`\rho_2 = t^{-\tau_2}` of :math:`\hat b_g`
            (>= 0). Default ``0.9``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        eps: Term added to the denominator (>= 0). Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "vsgd"
    family = "sgd"
    reference = "pytorch_optimizer.VSGD"
    # p', bg' and bhg' are three outputs none of which reads another, and each reads mu and mu^2 + sigma: mx.compile
    # gives those five a kernel each
    ops_per_leaf = 5

    def __init__(
        self,
        learning_rate: Tunable = 1e-1,
        ghattg: Tunable = 30.0,
        ps: Tunable = 1e-8,
        tau1: Tunable = 0.81,
        tau2: Tunable = 0.9,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        for name, value in (("ghattg", ghattg), ("ps", ps), ("tau1", tau1), ("tau2", tau2)):
            self._hyper(name, value, 0.0)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self.weight_decouple = weight_decouple

    def init_single(self, parameter: mx.array, state: dict) -> None:
        dtype = self.state_dtype or self.compute_dtype(parameter)
        ps = self.tunable("ps")
        state["mug"] = self.zeros(parameter)
        state["bg"] = mx.full(parameter.shape, 2.0 * ps, dtype=dtype)
        state["bhg"] = mx.full(parameter.shape, 2.0 * self.tunable("ghattg") * ps, dtype=dtype)

    def step_scalars(self, hp) -> None:
        hp.pa2 = 2.0 * hp.ps + 1.0 + 1e-4
        hp.pbg2 = 2.0 * hp.ps
        hp.pbhg2 = 2.0 * hp.ghattg * hp.ps
        hp.rho1 = mx.power(hp.step, -hp.tau1)
        hp.rho2 = mx.power(hp.step, -hp.tau2)
        hp.first = hp.step == 1
        hp.sg1 = hp.pbg2 / (hp.pa2 - 1.0)  # the first step's sigma_g and sigma_hat_g
        hp.shg1 = hp.pbhg2 / (hp.pa2 - 1.0)
        hp.var1 = hp.sg1 * hp.shg1 / (hp.sg1 + hp.shg1)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        bg, bhg = state["bg"], state["bhg"]
        sg = mx.where(hp.first, hp.sg1, bg / hp.pa2)
        shg = mx.where(hp.first, hp.shg1, bhg / hp.pa2)
        mug_prev = state["mug"]
        mug = (mug_prev * shg + g * sg) / (sg + shg)
        # sg shg / (sg + shg) from bg, bhg directly (= bg bhg / (pa2 (bg + bhg)) up to rounding): sg, shg and their
        # sum then feed only the kernel of mug instead of being written out for a second kernel (mlx_optim.fusion)
        if bg.dtype != g.dtype:
            bg, bhg = bg.astype(g.dtype), bhg.astype(g.dtype)
        var = mx.where(hp.first, hp.var1, bg * bhg / (hp.pa2 * (bg + bhg)))
        mug_sq = mx.square(mug) + var
        bg2 = hp.pbg2 + mug_sq - 2.0 * mug * mug_prev + mx.square(mug_prev)
        bhg2 = hp.pbhg2 + mug_sq - 2.0 * g * mug + mx.square(g)
        state["mug"] = mug
        state["bg"] = F.lerp(state["bg"], bg2, hp.rho1)
        state["bhg"] = F.lerp(state["bhg"], bhg2, hp.rho2)
        return p - hp.lr / (mx.sqrt(mug_sq) + hp.eps) * mug
