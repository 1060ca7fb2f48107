"""Fira (Chen et al., 2024): GaLore with full-rank compensation."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.functional.projections import axis_norm, growth_limiter, project, project_back
from mlx_optim.optimizers.galore import GaLore, document_args_of
from mlx_optim.registry import register


@register
@document_args_of(GaLore)
class Fira(GaLore):
    r"""Fira: GaLore plus a norm-scaled full-rank compensation for the part of the gradient outside the subspace.

    The part of the gradient outside the subspace, :math:`G_t - \alpha P R_t`, is added to the update, scaled
    per row (right projection), per column (left) or as a whole (full) by the ratio of norms of the Adam
    direction :math:`N_t = m_t / (\sqrt{v_t}+\epsilon)` and of :math:`R_t`, and its norm may grow by at most
    1.01x per step:

    .. math::
        S_t = \frac{\lVert N_t \rVert}{\lVert R_t \rVert + 10^{-8}} (G_t - \alpha P R_t),\quad
        S_t \leftarrow S_t / \ell_t,\quad
        \ell_t = \max\!\big(\tfrac{\lVert S_t\rVert}{\lVert S_{t-1}\rVert + 10^{-8}}, 1.01\big)/1.01 \\
        W_t = \big(W_{t-1} - \eta \tfrac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} (\alpha P N_t + S_t)\big)(1 - \eta\lambda)

    (``scale`` :math:`\alpha` multiplies the back-projection of :math:`R_t` too, as in the reference). The
    stored norm is ``state["scaling_grad"]``. Unprojected leaves take GaLore's plain step.

    Paper: "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint?" (Chen et al., 2024).
    Reference: ``pytorch_optimizer.Fira``, same keywords and defaults; the projection settings, group keys
    there, are keyword-only arguments here, and the basis is computed as in :class:`GaLore` (on refresh steps,
    with fixed singular-vector signs).

    """

    name = "fira"
    reference = "pytorch_optimizer.Fira"

    def init_single(self, parameter: mx.array, state: dict) -> None:
        super().init_single(parameter, state)
        if self.is_projected(state):
            state["scaling_grad"] = mx.zeros((), mx.float32)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if not self.is_projected(state):
            return super().update_single(g, p, state)
        side = self.side(g.shape)
        basis = self.refresh_basis(g, state)
        low = project(g, basis, side)
        direction = self.adam_direction(low, state)
        axis = None if side == "full" else (1 if side == "right" else 0)
        factor = axis_norm(direction, axis) / (axis_norm(low, axis) + 1e-8)
        if axis == 1:
            factor = factor[:, None]
        comp = (g - project_back(low, basis, side, hp.scale)) * factor
        comp_norm = F.norm(comp)
        limiter = growth_limiter(comp_norm, state["scaling_grad"], hp.first)
        comp = comp / limiter
        state["scaling_grad"] = comp_norm / limiter
        update = project_back(direction, basis, side, hp.scale) + comp
        p, _ = self.apply_weight_decay(p - hp.step_size * update, g, decouple=True)
        return p
