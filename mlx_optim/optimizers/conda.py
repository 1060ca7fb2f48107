"""Conda (Wang et al., 2025): column-normalized Adam."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Tunable
from mlx_optim.functional.projections import ProjectionFilter, project, project_back
from mlx_optim.functional.subset_norm import sn_expand, sn_reduce
from mlx_optim.optimizers.galore import _Projected
from mlx_optim.registry import register


@register
class Conda(_Projected):
    r"""Conda: Adam whose second moment lives in the singular basis of the first moment (column-normalized Adam).

    The full-rank basis :math:`P` (all singular vectors of :math:`m_t`, refreshed every ``update_proj_gap``
    steps and on the first) rotates both the gradient and the momentum before the second-moment EMA and the
    division.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) G_t,\quad \tilde G_t = P^\top G_t,\ \tilde m_t = P^\top m_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \tilde G_t^2 \\
        W_t = \big(W_{t-1} - \eta_t\, \alpha\, P \tfrac{\tilde m_t}{\sqrt{v_t}+\epsilon}\big)(1 - \eta\lambda),\quad
        \eta_t = \eta \tfrac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}

    (``G P^\top`` etc. for the other projection sides). Weight decay is decoupled and applied after the step.
    Unprojected leaves take a plain Adam step.

    Paper: "Conda: Column-Normalized Adam for Training Large Language Models Faster" (Wang et al., 2025).
    Reference: ``pytorch_optimizer.Conda``, same keywords and defaults. The reference projects every 2-D
    parameter; ``projection_filter`` can restrict that. As in :class:`GaLore` the basis (a CPU SVD per projected
    matrix) is computed on refresh steps only (inside your own ``mx.compile``: every step, adopted on refresh
    steps), and the singular vectors' signs are fixed (the largest-magnitude entry of each left
    singular vector positive), as in the parity rows' reference run.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Decoupled weight decay :math:`\lambda` (>= 0), applied after the step. Default ``0.0``.
        update_proj_gap (int): Recompute the basis every this many steps (>= 1), and on the first. Default
            ``2000``.
        scale: Factor :math:`\alpha` of the projected-back update. Default ``1.0``.
        projection_type: Which side of an ``(m, n)`` matrix is projected: ``"std"`` (the longer side away:
            right when ``m >= n``), ``"reverse_std"`` (the shorter side), ``"right"``, ``"left"``, ``"full"``
            (both) or ``"random"`` (the side of ``"std"``). Default ``"std"``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        projection_filter: ``callable(path, parameter) -> bool`` choosing the projected leaves among the 2-D ones;
            the others get a plain Adam step. Default ``None``: every 2-D leaf.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "conda"
    family = "memory-efficient"
    reference = "pytorch_optimizer.Conda"
    subset_norm_keys = ("exp_avg_sq",)  # mlx_optim.features: sn hook

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        update_proj_gap: int = 2000,
        scale: Tunable = 1.0,
        projection_type: str = "std",
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        projection_filter: ProjectionFilter | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._projection_options(None, update_proj_gap, scale, projection_type, projection_filter)
        self._hyper("eps", eps, 0.0)

    def init_moments(self, parameter: mx.array, state: dict, low_shape) -> None:
        state["exp_avg"] = self.zeros(parameter)  # full-shape momentum
        state["exp_avg_sq"] = self.zeros(parameter, low_shape)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        state["exp_avg"] = m
        if self.is_projected(state):
            side = self.side(g.shape)
            basis = self.refresh_basis(m, state)
            g, m = project(g, basis, side), project(m, basis, side)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * sn_reduce(mx.square(g), state["exp_avg_sq"])
        state["exp_avg_sq"] = v
        update = m / (mx.sqrt(sn_expand(v, m.shape)) + hp.eps)
        if self.is_projected(state):
            update = project_back(update, basis, side, hp.scale)
        p, _ = self.apply_weight_decay(p - hp.step_size * update, g, decouple=True)
        return p
