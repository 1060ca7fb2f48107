"""APOLLO (Zhu et al., 2024): SGD-like memory, AdamW-level performance."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Tunable
from mlx_optim.functional.projections import (
    Basis,
    ProjectionFilter,
    axis_norm,
    growth_limiter,
    project,
    project_back,
    random_basis,
)
from mlx_optim.optimizers.galore import _Projected, document_projection
from mlx_optim.registry import register


@register
@document_projection
class APOLLO(_Projected):
    r"""APOLLO: scaled SGD whose per-tensor or per-channel scale comes from AdamW in a random low-rank projection.

    AdamW whose moments live in a *random* rank-``r`` projection of each projected matrix
    (Gaussian, variance :math:`1/r`, redrawn every ``update_proj_gap`` steps and on the first);
    the projected Adam direction only sets a scale, per tensor or per channel, for the
    projected gradient, whose norm growth is limited to 1.01x per step:

    .. math::
        R_t = G_t P^\top,\quad N_t = \frac{m_t}{\sqrt{v_t}+\epsilon},\quad
        S_t = \frac{\lVert N_t\rVert}{\lVert R_t\rVert + 10^{-8}} R_t / \ell_t \\
        W_t = W_{t-1} - \eta_t\, \alpha^{3/2} S_t P,\quad
        \eta_t = \eta \tfrac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\ (\text{``correct_bias``})

    ``scale`` :math:`\alpha` enters as :math:`\sqrt\alpha` on the scaled gradient and again as the
    back-projection's factor, as in the reference (so :math:`\alpha^{3/2}` overall). With
    ``scale_type="channel"`` the norm ratio is taken per row or column (along the longer side
    of :math:`R_t`). Weight decay is decoupled (``weight_decouple``, applied after the step with
    the bias-corrected :math:`\eta_t` as its learning rate, a reference quirk; ``fixed_decay``
    drops it) or an L2 term added to the gradient. Unprojected leaves take a plain Adam step.

    Paper: "APOLLO: SGD-like Memory, AdamW-level Performance" (Zhu et al., 2024), arXiv:2412.05270.
    Reference: ``pytorch_optimizer.APOLLO``, same keywords and defaults; the projection settings, group keys
    there, are keyword-only arguments here (see :class:`GaLore` for ``projection_filter`` and when the basis is
    computed). The reference draws the projection with ``torch.randn`` from the global
    generator; here it is drawn from a key kept per leaf in the state (``seed``), so runs are reproducible and
    resumable. Only ``projection_type``'s choice of side matters (APOLLO never uses the SVD).

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-2``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        scale_type: Compute the update scale per ``"tensor"`` or per ``"channel"``. Default ``"tensor"``.
        weight_decay: Weight decay coefficient (>= 0). Default ``0.0``.
        weight_decouple: Decoupled decay after the step (at :math:`\eta_t`) instead of an L2 penalty added to
            the gradient. Default ``True``.
        fixed_decay: With decoupled decay, do not scale it by the step size. Default ``False``.
        correct_bias: Bias-correct the step size :math:`\eta_t`; ``False``: :math:`\eta_t = \eta`. Default
            ``True``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        rank (int): Rank :math:`r` (>= 1) of the random projection (it may exceed the matrix's sides; ``None`` is
            not allowed). Default ``128``.
        {projection_args}
        seed (int): Seed of the keys for the random projections. Default ``0``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "apollo"
    family = "memory-efficient"
    reference = "pytorch_optimizer.APOLLO"

    def __init__(
        self,
        learning_rate: Tunable = 1e-2,
        betas: Sequence[float] = (0.9, 0.999),
        scale_type: str = "tensor",
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        correct_bias: bool = True,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        rank: int = 128,
        update_proj_gap: int = 50,
        scale: Tunable = 1.0,
        projection_type: str = "std",
        projection_filter: ProjectionFilter | None = None,
        seed: int = 0,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._choice("scale_type", scale_type, ("tensor", "channel"))
        self._decay_options(weight_decay, weight_decouple, fixed_decay)
        self.correct_bias = correct_bias
        self._hyper("eps", eps, 0.0)
        if rank is None:
            raise ValueError("APOLLO: rank=None is not allowed; the random projection needs an int rank")
        self._projection_options(rank, update_proj_gap, scale, projection_type, projection_filter)
        self.scale_type = scale_type
        self.globals["key"] = mx.random.key(seed)

    def basis_rank(self, shape: Sequence[int]) -> int:
        return self.rank  # random matrices may have more columns than the matrix has rows

    def init_single(self, parameter: mx.array, state: dict) -> None:
        super().init_single(parameter, state)
        if self.is_projected(state):
            self.globals["key"], state["key"] = mx.random.split(self.globals["key"])
            state["scaling_grad"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        super().step_scalars(hp)
        if not self.correct_bias:
            hp.step_size = hp.lr

    def refresh_basis(self, x: mx.array, state: dict) -> Basis:
        # the leaf's key advances every step (refresh or not), so the bases drawn do not depend on the schedule path
        key, sub = mx.random.split(state["key"])
        state["key"] = key
        return self.select_basis(state, lambda: random_basis(sub, x.shape, self.side(x.shape), self.rank, x.dtype))

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if not self.weight_decouple:
            p, g = self.apply_weight_decay(p, g, decouple=False)
        if self.is_projected(state):
            side = self.side(g.shape)
            basis = self.refresh_basis(g, state)
            low = project(g, basis, side)
            direction = self.adam_direction(low, state)
            if self.scale_type == "channel":
                axis = 0 if direction.shape[0] < direction.shape[1] else 1
                factor = axis_norm(direction, axis) / (axis_norm(low, axis) + 1e-8)
                if axis == 1:
                    factor = factor[:, None]
            else:
                factor = F.norm(direction) / (F.norm(low) + 1e-8)
            scaled = low * factor
            scaled_norm = F.norm(scaled)
            limiter = growth_limiter(scaled_norm, state["scaling_grad"], hp.first)
            scaled = scaled / limiter
            state["scaling_grad"] = scaled_norm / limiter
            update = project_back(scaled * mx.sqrt(hp.scale), basis, side, hp.scale)
        else:
            update = self.adam_direction(g, state)
        p = p - hp.step_size * update
        if self.weight_decouple:
            p, _ = self.apply_weight_decay(p, g, decouple=True, fixed=self.fixed_decay, lr=hp.step_size)
        return p
