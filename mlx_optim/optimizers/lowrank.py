"""Low-rank and projected optimizers from pytorch_optimizer: GaLore, Fira, Conda, APOLLO.

(Alice, from the same family, is not ported yet: its subspace switch needs a complete QR and
a random column choice, and its default rank makes 1-D leaves' eigenspaces degenerate.)

All four run Adam in a projected coordinate system of each matrix parameter and map the
normalized update back. They share the GaLore projector, written here as pure functions
(:func:`projection_side`, :func:`svd_basis`, :func:`random_basis`, :func:`project`,
:func:`project_back`).

**Which leaves are projected.** pytorch_optimizer projects the 2-D parameters of the
parameter groups that carry ``rank`` / ``update_proj_gap`` / ``scale`` / ``projection_type``
keys (Conda: every 2-D parameter). Here the projection settings are constructor keywords
(the reference's group keys, with :class:`GaLoreProjector`'s defaults ``rank=128``,
``update_proj_gap=50``, ``scale=1.0``, ``projection_type="std"``) and
``projection_filter(path, parameter) -> bool`` picks the projected leaves (``path`` like
``"layers.0.weight"``); a leaf is projected when it is 2-D and the filter accepts it
(default: every 2-D leaf). Other leaves get the reference's plain, unprojected update.
To project only some layers with their own rank, use one optimizer per set of settings, or
a filter. ``projection_filter=lambda path, p: False`` gives the reference's behaviour for
a group without ``rank``. The Keras seed's GaLore and Fira default ``rank``,
``update_proj_gap``, ``scale`` and ``projection_type`` to ``None`` meaning "no projection";
here ``rank=None`` keeps ``GaLoreProjector``'s meaning (all singular vectors) and "no
projection" is the filter above.

**Projection refresh.** The reference recomputes the projection on the first step and
whenever ``step % update_proj_gap == 0``. Here the basis is an array in the state and the
choice is ``mx.where`` on the step, so the step stays one compilable graph: the SVD (or
the random draw) is computed on *every* step and adopted only on refresh steps. That is a
CPU SVD per projected matrix per step (``mx.linalg.svd`` runs on the CPU stream, also
inside ``mx.compile``), an extra cost the reference only pays every ``update_proj_gap``
steps.

**SVD signs.** Singular vectors are defined up to sign, and LAPACK builds differ in the
signs they return; since the moments live in the projected coordinates across refreshes,
the sign convention changes the trajectory after the first refresh. :func:`svd_basis`
fixes it: each left singular vector is flipped so its largest-magnitude entry is positive
(the right singular vector with it). The parity rows run the reference with the same
convention applied to ``torch.linalg.svd``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.features import sn_expand, sn_reduce
from mlx_optim.registry import register

__all__ = [
    "PROJECTION_TYPES",
    "default_projection_filter",
    "projection_side",
    "projected_shape",
    "canonical_svd",
    "svd_basis",
    "random_basis",
    "project",
    "project_back",
]

PROJECTION_TYPES = ("std", "reverse_std", "right", "left", "full", "random")
ProjectionFilter = Callable[[str, mx.array], bool]
Basis = tuple[mx.array, ...]


def default_projection_filter(path: str, parameter: mx.array) -> bool:
    """Project every 2-D parameter."""
    return parameter.ndim == 2


# ----------------------------------------------------------------------------- the GaLore projector
def projection_side(shape: Sequence[int], projection_type: str) -> str:
    """``"right"`` (``G P^T``), ``"left"`` (``P^T G``) or ``"full"`` (``A^T G B^T``) for an ``(m, n)`` matrix.

    ``std`` / ``random`` project the longer side away (right when ``m >= n``), ``reverse_std``
    the shorter one, as pytorch_optimizer's ``GaLoreProjector``.
    """
    m, n = shape
    if projection_type in ("std", "random"):
        return "right" if m >= n else "left"
    if projection_type == "reverse_std":
        return "left" if m >= n else "right"
    return projection_type


def _svd_rank(shape: Sequence[int], rank: int | None) -> int:
    k = min(shape)
    return k if rank is None else min(rank, k)


def basis_shapes(shape: Sequence[int], side: str, rank: int) -> dict[str, tuple[int, int]]:
    """State shapes of the basis: ``proj_left`` ``(m, r)`` and/or ``proj_right`` ``(r, n)``."""
    m, n = shape
    out = {}
    if side in ("left", "full"):
        out["proj_left"] = (m, rank)
    if side in ("right", "full"):
        out["proj_right"] = (rank, n)
    return out


def projected_shape(shape: Sequence[int], side: str, rank: int) -> tuple[int, int]:
    """Shape of the projected gradient."""
    m, n = shape
    return (rank if side in ("left", "full") else m, rank if side in ("right", "full") else n)


def canonical_svd(x: mx.array) -> tuple[mx.array, mx.array]:
    """Reduced SVD factors ``(U, V^T)`` of a matrix with a fixed sign convention.

    Each column of ``U`` is flipped so that its largest-magnitude entry is positive, and the
    matching row of ``V^T`` with it (so ``U diag(s) V^T`` is unchanged).
    """
    u, _, vt = mx.linalg.svd(x.astype(mx.float32), stream=mx.cpu)
    k = min(x.shape)
    u, vt = u[:, :k], vt[:k]
    idx = mx.argmax(mx.abs(u), axis=0)
    sign = F.sign(mx.take_along_axis(u, idx[None, :], axis=0))[0]
    sign = mx.where(sign == 0, 1.0, sign)
    return u * sign, vt * sign[:, None]


def svd_basis(x: mx.array, side: str, rank: int | None) -> Basis:
    """The leading ``rank`` singular vectors of ``x`` for ``side`` (GaLore's ``get_orthogonal_matrix``)."""
    r = _svd_rank(x.shape, rank)
    u, vt = canonical_svd(x)
    left, right = u[:, :r], vt[:r]
    return {"left": (left,), "right": (right,), "full": (left, right)}[side]


def random_basis(key: mx.array, shape: Sequence[int], side: str, rank: int, dtype=mx.float32) -> Basis:
    """APOLLO's random projection: Gaussian ``(m, r)`` and ``(r, n)`` matrices scaled by ``1/sqrt(r)``."""
    m, n = shape
    k_left, k_right = mx.random.split(key)
    left = mx.random.normal((m, rank), dtype=dtype, key=k_left) / math.sqrt(rank)
    right = mx.random.normal((rank, n), dtype=dtype, key=k_right) / math.sqrt(rank)
    return {"left": (left,), "right": (right,), "full": (left, right)}[side]


def project(g: mx.array, basis: Basis, side: str) -> mx.array:
    """The low-rank gradient: ``G P^T`` (right), ``P^T G`` (left) or ``A^T G B^T`` (full)."""
    if side == "right":
        return g @ basis[0].T
    if side == "left":
        return basis[0].T @ g
    return basis[0].T @ g @ basis[1].T


def project_back(low: mx.array, basis: Basis, side: str, scale) -> mx.array:
    """Map a low-rank update back to the parameter's shape, times ``scale``."""
    if side == "right":
        out = low @ basis[0]
    elif side == "left":
        out = basis[0] @ low
    else:
        out = basis[0] @ low @ basis[1]
    return out * scale


def growth_limiter(norm: mx.array, prev_norm: mx.array, first: mx.array, gamma: float = 1.01) -> mx.array:
    """Fira's / APOLLO's norm-growth limiter ``max(norm / (prev + 1e-8), gamma) / gamma`` (1 on the first step)."""
    return mx.where(first, 1.0, mx.maximum(norm / (prev_norm + 1e-8), gamma) / gamma)


# ----------------------------------------------------------------------------- the shared base
class _Projected(Optimizer):
    """Adam with GaLore-projected matrix leaves; subclasses choose the basis and the update."""

    svd_rank_none = False  # Conda: full-rank SVD basis, ``rank`` is not an option

    def _projection_options(self, rank, update_proj_gap, scale, projection_type, projection_filter) -> None:
        if rank is not None:
            self._check("rank", rank, 1)
        self._check("update_proj_gap", update_proj_gap, 1)
        self._hyper("scale", scale)
        self._choice("projection_type", projection_type, PROJECTION_TYPES)
        self.rank = None if rank is None else int(rank)
        self.update_proj_gap = int(update_proj_gap)
        self.projection_type = projection_type
        self.projection_filter = projection_filter or default_projection_filter

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")
        hp.first = hp.step == 1
        hp.refresh = hp.first | (mx.remainder(hp.step, self.update_proj_gap) == 0)

    def projects(self, parameter: mx.array) -> bool:
        return parameter.ndim == 2 and bool(self.projection_filter(self._leaf_path, parameter))

    def basis_rank(self, shape: Sequence[int]) -> int:
        return _svd_rank(shape, self.rank)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.projects(parameter):
            side = projection_side(parameter.shape, self.projection_type)
            rank = self.basis_rank(parameter.shape)
            for k, shape in basis_shapes(parameter.shape, side, rank).items():
                state[k] = self.zeros(parameter, shape)
            low_shape = projected_shape(parameter.shape, side, rank)
            self.init_moments(parameter, state, low_shape)
        else:
            self.init_moments(parameter, state, parameter.shape)

    def init_moments(self, parameter: mx.array, state: dict, low_shape) -> None:
        state["exp_avg"] = self.zeros(parameter, low_shape)
        state["exp_avg_sq"] = self.zeros(parameter, low_shape)

    def is_projected(self, state: dict) -> bool:
        return "proj_left" in state or "proj_right" in state

    def side(self, shape) -> str:
        return projection_side(shape, self.projection_type)

    def new_basis(self, x: mx.array, state: dict) -> Basis:
        return svd_basis(x, self.side(x.shape), self.rank)

    def refresh_basis(self, x: mx.array, state: dict) -> Basis:
        """The basis for this step: recomputed from ``x`` on refresh steps, else the stored one."""
        new = self.new_basis(x, state)
        keys = [k for k in ("proj_left", "proj_right") if k in state]
        out = []
        for k, b in zip(keys, new):
            state[k] = mx.where(self.hp.refresh, b.astype(state[k].dtype), state[k])
            out.append(state[k])
        return tuple(out)

    def adam_direction(self, g: mx.array, state: dict) -> mx.array:
        """``m / (sqrt(v) + eps)`` after the moment updates (no bias correction: it is in ``step_size``)."""
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return m / (mx.sqrt(v) + hp.eps)


# ----------------------------------------------------------------------------- GaLore
@register
class GaLore(_Projected):
    r"""GaLore (Zhao et al., 2024, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection").

    AdamW whose moments live in a rank-``r`` subspace of each projected matrix: the basis
    :math:`P` holds the leading singular vectors of the gradient, recomputed every
    ``update_proj_gap`` steps (and on the first).

    .. math::
        R_t = P^\top G_t \ (\text{or } G_t P^\top),\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) R_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) R_t^2 \\
        W_t = \big(W_{t-1} - \eta_t\, \alpha\, P \tfrac{m_t}{\sqrt{v_t}+\epsilon}\big)(1 - \eta\lambda),\quad
        \eta_t = \eta \tfrac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}

    with ``scale`` :math:`\alpha`. Unprojected leaves take the same step without :math:`P`.
    Weight decay is decoupled and applied after the step, as in the reference. See the
    module docstring for the projection filter, the every-step SVD and the sign convention.
    """

    name = "galore"
    family = "memory-efficient"
    reference = "pytorch_optimizer.GaLore"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        rank: int | None = 128,
        update_proj_gap: int = 50,
        scale: Tunable = 1.0,
        projection_type: str = "std",
        projection_filter: ProjectionFilter | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self._projection_options(rank, update_proj_gap, scale, projection_type, projection_filter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.is_projected(state):
            side = self.side(g.shape)
            basis = self.refresh_basis(g, state)
            update = project_back(self.adam_direction(project(g, basis, side), state), basis, side, hp.scale)
        else:
            update = self.adam_direction(g, state)
        p, _ = self.apply_weight_decay(p - hp.step_size * update, g, decouple=True)
        return p


# ----------------------------------------------------------------------------- Fira
@register
class Fira(GaLore):
    r"""Fira (Chen et al., 2024, "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint?").

    GaLore plus a full-rank compensation: the part of the gradient outside the subspace,
    :math:`G_t - \alpha P R_t`, is added to the update, scaled per row (right projection),
    per column (left) or as a whole (full) by the ratio of norms of the Adam direction
    :math:`N_t = m_t / (\sqrt{v_t}+\epsilon)` and of :math:`R_t`, and its norm may grow by at
    most 1.01x per step:

    .. math::
        S_t = \frac{\lVert N_t \rVert}{\lVert R_t \rVert + 10^{-8}} (G_t - \alpha P R_t),\quad
        S_t \leftarrow S_t / \ell_t,\quad
        \ell_t = \max\!\big(\tfrac{\lVert S_t\rVert}{\lVert S_{t-1}\rVert + 10^{-8}}, 1.01\big)/1.01 \\
        W_t = \big(W_{t-1} - \eta \tfrac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} (\alpha P N_t + S_t)\big)(1 - \eta\lambda)

    (``scale`` :math:`\alpha` multiplies the back-projection of :math:`R_t` too, as in the
    reference). The stored norm is ``state["scaling_grad"]``.
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
        factor = _norm(direction, axis) / (_norm(low, axis) + 1e-8)
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


def _norm(x: mx.array, axis: int | None) -> mx.array:
    return mx.sqrt(mx.sum(mx.square(x), axis=axis))


# ----------------------------------------------------------------------------- Conda
@register
class Conda(_Projected):
    r"""Conda (Wang et al., 2025, "Conda: Column-Normalized Adam for Training Large Language Models Faster").

    Adam whose second moment lives in the singular basis of the *first* moment: the
    full-rank basis :math:`P` (all singular vectors of :math:`m_t`, refreshed every
    ``update_proj_gap`` steps and on the first) rotates both the gradient and the momentum
    before the second-moment EMA and the division.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) G_t,\quad \tilde G_t = P^\top G_t,\ \tilde m_t = P^\top m_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \tilde G_t^2 \\
        W_t = \big(W_{t-1} - \eta_t\, \alpha\, P \tfrac{\tilde m_t}{\sqrt{v_t}+\epsilon}\big)(1 - \eta\lambda),\quad
        \eta_t = \eta \tfrac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}

    (``G P^\top`` etc. for the other projection sides). The reference projects every 2-D
    parameter; ``projection_filter`` can restrict that. Weight decay is decoupled and
    applied after the step.
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


# ----------------------------------------------------------------------------- APOLLO
@register
class APOLLO(_Projected):
    r"""APOLLO (Zhu et al., 2024, "APOLLO: SGD-like Memory, AdamW-level Performance").

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
    drops it) or an L2 term added to the gradient.

    The reference draws the projection with ``torch.randn`` from the global generator; here
    it is drawn from a key kept per leaf in the state (keyword-only ``seed``), so runs are
    reproducible and resumable. Only ``projection_type``'s choice of side matters (APOLLO
    never uses the SVD).
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
        self.state["key"] = mx.random.key(seed)

    def basis_rank(self, shape: Sequence[int]) -> int:
        return self.rank  # random matrices may have more columns than the matrix has rows

    def init_single(self, parameter: mx.array, state: dict) -> None:
        super().init_single(parameter, state)
        if self.is_projected(state):
            self.state["key"], state["key"] = mx.random.split(self.state["key"])
            state["scaling_grad"] = mx.zeros((), mx.float32)

    def step_scalars(self, hp) -> None:
        super().step_scalars(hp)
        if not self.correct_bias:
            hp.step_size = hp.lr

    def new_basis(self, x: mx.array, state: dict) -> Basis:
        key, sub = mx.random.split(state["key"])
        state["key"] = key
        return random_basis(sub, x.shape, self.side(x.shape), self.rank, dtype=x.dtype)

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
                factor = _norm(direction, axis) / (_norm(low, axis) + 1e-8)
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
