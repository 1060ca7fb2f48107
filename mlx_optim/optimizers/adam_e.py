"""More Adam relatives: NAdamW and SparseAdam (torch.optim), TAdam and RaLars (holocron)."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.optimizers.adam import NAdam
from mlx_optim.registry import register


@register
class NAdamW(NAdam):
    """NAdam with decoupled weight decay: ``torch.optim.NAdam(decoupled_weight_decay=True)``.

    ``p <- p (1 - lr wd)`` before the NAdam step (see :class:`~mlx_optim.optimizers.adam.NAdam`).
    Defaults follow the Keras seed / timm ``NAdamW`` (``learning_rate=1e-3``,
    ``weight_decay=1e-2``) because the torch reference is ``NAdam``, whose defaults
    (``lr=2e-3``, ``weight_decay=0``) describe plain NAdam; the seed's ``caution``
    option has no torch counterpart and is not offered.
    """

    name = "nadamw"
    reference = "torch.optim.NAdam(decoupled_weight_decay=True)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 1e-2,
        momentum_decay: Tunable = 4e-3,
        *,
        maximize: bool = False,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            learning_rate,
            betas,
            eps,
            weight_decay,
            momentum_decay,
            decoupled_weight_decay=True,
            maximize=maximize,
            state_dtype=state_dtype,
        )


@register
class SparseAdam(Optimizer):
    r"""SparseAdam (``torch.optim.SparseAdam``) on dense MLX gradients.

    torch's SparseAdam takes sparse gradients and updates the moments and the
    parameter only at the gradient's indices (e.g. the embedding rows looked up
    in the batch). MLX has no sparse arrays, so here the index set is the set of
    *non-zero* gradient entries: where :math:`g_t = 0` the moments and the
    parameter stay untouched (rows not looked up have exactly zero gradient).
    Unlike torch, an explicitly stored zero is therefore not distinguishable from
    a missing index (torch would decay the moments there). Elsewhere:

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g_t,\quad v_t = \beta_2 v + (1-\beta_2) g_t^2,\quad
        p_t = p - \frac{\eta\sqrt{1-\beta_2^t}}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t} + \epsilon}

    (``eps`` is added to the uncorrected :math:`\sqrt{v_t}`, as in torch). The
    step count is global, as torch's per-parameter count is incremented on every
    step that parameter has a (possibly empty) gradient.
    """

    name = "sparseadam"
    family = "adam"
    reference = "torch.optim.SparseAdam"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        if not callable(learning_rate):
            self._check("learning_rate", learning_rate, 0.0, None, "(]")
        self._hyper("eps", eps, 0.0, None, "(]")
        self._betas(betas, 2)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        seen = g != 0
        m = mx.where(seen, hp.ema(state["exp_avg"], g, "beta1"), state["exp_avg"])
        v = mx.where(seen, hp.ema(state["exp_avg_sq"], mx.square(g), "beta2"), state["exp_avg_sq"])
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return mx.where(seen, p - hp.step_size * m / (mx.sqrt(v) + hp.eps), p)


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
    r"""TAdam (Ilboudo et al., 2020, arXiv 2003.00179): Adam with a Student-t robust first moment.

    Follows holocron's code (``holocron.optim.TAdam``), which differs from its docs:

    .. math::
        w_t = \frac{\nu + d}{\nu + \sum_j (g_t^j - m_{t-1}^j)^2 / (v_{t-1}^j + \epsilon)},\quad
        m_t = \frac{W_{t-1} m_{t-1} + w_t g_t}{W_{t-1} + w_t},\quad
        W_t = \frac{2\beta_1 - 1}{\beta_1} W_{t-1} + w_t \\
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    with :math:`W_0 = \beta_1/(1-\beta_1)`, :math:`d` the number of elements and
    ``dof`` :math:`\nu` defaulting to :math:`d`. Code-vs-doc differences (we follow
    the code): :math:`v` uses :math:`g_t^2` (the docs say :math:`g_t - g_{t-1}`), and
    :math:`W` decays by :math:`(2\beta_1-1)/\beta_1` (not in the docs). Step 1 is
    a no-op because :math:`v_0=0` makes :math:`w_1\approx 0`. ``weight_decay`` is an
    L2 penalty; ``amsgrad`` uses the running max of :math:`v`. No ``maximize``
    (holocron has none).
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
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)
        if self.amsgrad:
            state["max_exp_avg_sq"] = self.zeros(parameter)
        beta1 = self.state["beta1"]
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


@register
class RaLars(Optimizer):
    r"""RaLars (holocron): RAdam (arXiv 1908.03265) with a LARS trust ratio (arXiv 1708.03888).

    Follows holocron's code (``holocron.optim.RaLars``):

    .. math::
        \hat m = \frac{m_t}{1-\beta_1^t},\ \hat v = \frac{v_t}{1-\beta_2^t},\quad
        u_t = \begin{cases} r_t \hat m / (\sqrt{\hat v} + \epsilon) & \rho_t > 4 \\
              \hat m / (\sqrt{\hat v} + \epsilon) & \text{else, with force\_adaptive\_momentum} \\
              \hat m & \text{else} \end{cases} \;+\; \lambda p \\
        p_t = p_{t-1} - \eta \frac{\operatorname{clip}(\lVert p\rVert, \text{scale\_clip})}{\lVert u_t\rVert} u_t

    (ratio 1 when either norm is 0). :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`,
    :math:`r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty / ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}`.
    Note the rectification threshold is :math:`\rho_t > 4` (torch's RAdam uses > 5) and,
    unlike torch, :math:`r_t` has no :math:`\sqrt{1-\beta_2^t}` factor (the second moment is
    bias-corrected instead). ``scale_clip`` defaults to ``(0, 10)``; ``weight_decay`` is not
    range-checked by holocron and is not here either. No ``maximize`` (holocron has none).
    """

    name = "ralars"
    family = "adam"
    reference = "holocron.optim.RaLars (torch transcription)"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: Tunable = 1e-8,
        weight_decay: Tunable = 0.0,
        force_adaptive_momentum: bool = False,
        scale_clip: tuple[float, float] | None = None,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, state_dtype=state_dtype)
        self._hyper("eps", eps, 0.0)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay)
        self.force_adaptive_momentum = force_adaptive_momentum
        scale_clip = (0.0, 10.0) if scale_clip is None else tuple(float(c) for c in scale_clip)
        if len(scale_clip) != 2:
            raise ValueError(f"RaLars: scale_clip={scale_clip!r} must be a (low, high) pair")
        self.scale_clip = scale_clip

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["exp_avg"] = self.zeros(parameter)
        state["exp_avg_sq"] = self.zeros(parameter)

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2 = hp.bias_correction("beta2")
        sma_inf = 2 / hp.one_minus_beta2 - 1
        sma_t = sma_inf - 2 * hp.step * (1 - hp.bc2) / hp.bc2
        hp.rectified = sma_t > 4
        safe = mx.maximum(sma_t, 4.0)
        hp.r_t = mx.sqrt((safe - 4) * (safe - 2) * sma_inf / ((sma_inf - 4) * (sma_inf - 2) * safe))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = hp.ema(state["exp_avg"], g, "beta1")
        v = hp.ema(state["exp_avg_sq"], mx.square(g), "beta2")
        state["exp_avg"], state["exp_avg_sq"] = m, v
        m_hat = m / hp.bc1
        adaptive = m_hat / (mx.sqrt(v / hp.bc2) + hp.eps)
        update = mx.where(hp.rectified, hp.r_t * adaptive, adaptive if self.force_adaptive_momentum else m_hat)
        if self.decays():
            update = update + hp.weight_decay * p
        phi = mx.clip(F.norm(p), *self.scale_clip)
        u_norm = F.norm(update)
        local_lr = mx.where((phi == 0) | (u_norm == 0), 1.0, phi / mx.where(u_norm == 0, 1.0, u_norm))
        return p - hp.lr * local_lr * update
