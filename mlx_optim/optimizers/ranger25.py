"""Ranger25: ADOPT + AdEMAMix + Cautious + StableAdamW/Adam-atan2 + OrthoGrad + AGC + Lookahead."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.lookahead import lookahead_merge
from mlx_optim.registry import register


@register
class Ranger25(Optimizer):
    r"""Ranger25: ADOPT + AdEMAMix + Cautious + StableAdamW/Adam-atan2 + OrthoGrad + AGC + Lookahead.

    Per parameter and step: OrthoGrad (optional), weight decay (decoupled by default), AGC (``agc_eps=1e-3``,
    ``clip=1e-2``), then with the ADOPT-normalized gradient
    :math:`\tilde g = \operatorname{clip}(g / \max(\sqrt{v_{t-1}}, \epsilon), \pm t^{1/4})`:

    .. math::
        m_t = \beta_1 m + (1-\beta_1)\tilde g,\quad v_t = \beta_2 v + (1-\beta_2) g^2,\quad
        s_t = \beta_{3,t} s + (1-\beta_{3,t})\tilde g \\
        u_t = \operatorname{cautious}(m_t) + \alpha_t s_t,\quad
        p_t = p - \frac{\eta}{(1-\beta_1^t)\,\mathrm{rms}_t}
              \frac{u_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    with :math:`\mathrm{rms}_t` the StableAdamW RMS (1 without ``stable_adamw``), AdEMAMix's schedules for
    :math:`\alpha_t, \beta_{3,t}` when ``t_alpha_beta3`` is set, ``eps=None`` with ``stable_adamw=False``
    selecting Adam-atan2 (:math:`\operatorname{atan2}(u_t, \sqrt{\hat v_t})`; ``eps=None`` with
    ``stable_adamw=True`` means ``eps=1e-8`` without the RMS, as in the earlier code), and Lookahead every
    ``lookahead_merge_time`` steps.

    Paper: none of its own; it combines ADOPT (Taniguchi et al., NeurIPS 2024, arXiv:2411.02853), AdEMAMix
    (Pagliardini et al., arXiv:2409.03137), Cautious optimizers (Liang et al., arXiv:2411.16085),
    StableAdamW (Wortsman et al., arXiv:2304.13013), Adam-atan2 (Everett et al., arXiv:2407.05872),
    OrthoGrad (Prieto et al., arXiv:2501.04697), AGC (Brock et al., arXiv:2102.06171) and Lookahead (Zhang
    et al., arXiv:1907.08610).

    Reference: no maintained PyTorch reference exists (pytorch_optimizer 4.1.0 dropped its ``Ranger25``).
    This port follows the math of the earlier pytorch_optimizer ``Ranger25``; its parity reference is a NumPy
    transcription in ``tests/parity/rows/ranger25.py``. Deviation: the earlier pytorch_optimizer code divided
    one shared ``step_size`` by every parameter's RMS in turn (compounding across parameters); here each
    parameter uses its own RMS. No ``maximize`` (the earlier code has none).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: ``(beta1, beta2, beta3)``: decay rates of the first moment, the second moment and the slow
            EMA (AdEMAMix's :math:`\beta_3`), each in [0, 1). Default ``(0.9, 0.98, 0.9999)``.
        weight_decay: Weight decay coefficient (>= 0). Default ``1e-3``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        fixed_decay: With ``weight_decouple``, decay by ``weight_decay`` without scaling it by the learning
            rate. Default ``False``.
        alpha: Weight :math:`\alpha` of the slow EMA in the update (>= 0). Default ``5.0``.
        t_alpha_beta3: Warm-up length (in steps) of AdEMAMix's schedules for :math:`\alpha_t` and
            :math:`\beta_{3,t}`; ``None`` uses the constants. Default ``None``.
        lookahead_merge_time: Number of steps between Lookahead merges (> 0). Default ``5``.
        lookahead_blending_alpha: Lookahead interpolation factor from the slow weights toward the fast
            ones, in [0, 1]. Default ``0.5``.
        cautious: Zero the momentum where its sign disagrees with the gradient and rescale the rest.
            Default ``True``.
        stable_adamw: Divide the step size by StableAdamW's RMS of :math:`g^2 / v_t`. Default ``True``.
        orthograd: OrthoGrad: remove from the gradient its component along the parameter and rescale it to
            the gradient's norm. Default ``True``.
        eps: Term added to the denominator and lower bound in ADOPT's normalization (>= 0); ``None``
            selects Adam-atan2 (see above). Default ``1e-8``.
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "ranger25"
    family = "ranger"
    reference = "NumPy transcription (earlier pytorch_optimizer Ranger25)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.98, 0.9999),
        weight_decay: Tunable = 1e-3,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        alpha: Tunable = 5.0,
        t_alpha_beta3: float | None = None,
        lookahead_merge_time: int = 5,
        lookahead_blending_alpha: Tunable = 0.5,
        cautious: bool = True,
        stable_adamw: bool = True,
        orthograd: bool = True,
        eps: Tunable | None = 1e-8,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._betas(betas, 3)
        self._hyper("alpha", alpha, 0.0)
        if t_alpha_beta3 is not None:
            self._check("t_alpha_beta3", t_alpha_beta3, 0.0)
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self._check("lookahead_merge_time", lookahead_merge_time, 0, None, "(]")
        self._hyper("lookahead_blending_alpha", lookahead_blending_alpha, 0.0, 1.0)
        self.atan2 = eps is None and not stable_adamw
        self._hyper("eps", 1e-8 if eps is None else eps, 0.0)
        self.t_alpha_beta3 = None if t_alpha_beta3 is None else float(t_alpha_beta3)
        self.lookahead_merge_time = int(lookahead_merge_time)
        self.cautious, self.orthograd = cautious, orthograd
        self.stable_adamw = stable_adamw and eps is not None

    def init_single(self, parameter: mx.array, state: dict) -> None:
        self.zero_state(parameter, state, "exp_avg", "exp_avg_sq", "exp_avg_slow")
        state["slow_momentum"] = parameter.astype(self.state_dtype or self.compute_dtype(parameter))

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr / hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))
        hp.clip = mx.power(hp.step, 0.25)
        hp.alpha_t, hp.beta3_t = F.ademamix_schedules(hp.step, self.t_alpha_beta3, hp.alpha, hp.beta1, hp.beta3)
        hp.sync = F.every(hp.step, self.lookahead_merge_time)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.orthograd:
            g = F.orthogonalize(p, g)
        p, g = self.decay_weights(p, g)
        g = F.agc(p, g, 1e-3, 1e-2)
        v = state["exp_avg_sq"]
        normed = mx.clip(g / mx.maximum(mx.sqrt(v), hp.eps), -hp.clip, hp.clip)
        m = hp.ema(state["exp_avg"], normed, "beta1")
        v = hp.ema(v, mx.square(g), "beta2")
        slow = F.ema(state["exp_avg_slow"], normed, hp.beta3_t)
        state["exp_avg"], state["exp_avg_sq"], state["exp_avg_slow"] = m, v, slow
        update = self.apply_cautious(m, g) if self.cautious else m
        update = update + hp.alpha_t * slow
        step_size = hp.step_size / F.stable_adamw_rms(g, v) if self.stable_adamw else hp.step_size
        denom = mx.sqrt(v) / hp.bc2_sqrt
        if self.atan2:
            p = p - step_size * mx.arctan2(update, denom)
        else:
            p = p - step_size * update / (denom + hp.eps)
        slow = state["slow_momentum"]  # chained=False: fewer kernels here (lookahead_merge)
        p, state["slow_momentum"] = lookahead_merge(p, slow, hp.lookahead_blending_alpha, hp.sync, chained=False)
        return p
