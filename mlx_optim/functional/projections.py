"""Low-rank and projection math: GaLore / APOLLO bases, AdamP's radial projection."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import linalg
from mlx_optim.functional import elementwise as E


def adamp_projection(p, g, perturb, delta, wd_ratio, eps) -> tuple[mx.array, mx.array]:
    """AdamP's projection: drop the radial component of ``perturb`` for scale-invariant weights.

    A weight counts as scale invariant per output channel (rows of ``p``) when the
    largest ``|cos(g, p)|`` over channels is below ``delta / sqrt(channel size)``,
    else as a whole layer when ``|cos(g, p)| < delta / sqrt(p.size)``. Returns the
    projected update and the weight-decay ratio (``wd_ratio`` if projected, else 1).
    """
    n = p.shape[0]
    expand = (n,) + (1,) * (p.ndim - 1)
    p_rows, g_rows = p.reshape(n, -1), g.reshape(n, -1)

    def row_norm(x):
        return mx.sqrt(mx.sum(mx.square(x), axis=1))

    p_row_norm, p_norm = row_norm(p_rows), mx.sqrt(mx.sum(mx.square(p)))
    cos_rows = mx.abs(mx.sum(g_rows * p_rows, axis=1)) / (
        mx.maximum(row_norm(g_rows), eps) * mx.maximum(p_row_norm, eps)
    )
    cos_layer = mx.abs(mx.sum(g * p)) / (mx.maximum(mx.sqrt(mx.sum(mx.square(g))), eps) * mx.maximum(p_norm, eps))
    channel = mx.max(cos_rows) < delta / math.sqrt(p_rows.shape[1])
    layer = cos_layer < delta / math.sqrt(p.size)

    p_n_channel = p / (p_row_norm + eps).reshape(expand)
    radial_channel = mx.sum((p_n_channel * perturb).reshape(n, -1), axis=1).reshape(expand)
    p_n_layer = p / (p_norm + eps)
    radial_layer = mx.sum(p_n_layer * perturb)
    radial = mx.where(channel, p_n_channel * radial_channel, mx.where(layer, p_n_layer * radial_layer, 0.0))
    ratio = mx.where(channel | layer, wd_ratio, 1.0)
    return perturb - radial, ratio


PROJECTION_TYPES = ("std", "reverse_std", "right", "left", "full", "random")


ProjectionFilter = Callable[[str, mx.array], bool]


Basis = tuple[mx.array, ...]


def default_projection_filter(path: str, parameter: mx.array) -> bool:
    """Project every 2-D parameter."""
    return parameter.ndim == 2


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


def svd_rank(shape: Sequence[int], rank: int | None) -> int:
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
    u, _, vt = linalg.svd(x.astype(mx.float32))
    k = min(x.shape)
    u, vt = u[:, :k], vt[:k]
    idx = mx.argmax(mx.abs(u), axis=0)
    sign = E.sign(mx.take_along_axis(u, idx[None, :], axis=0))[0]
    sign = mx.where(sign == 0, 1.0, sign)
    return u * sign, vt * sign[:, None]


def svd_basis(x: mx.array, side: str, rank: int | None) -> Basis:
    """The leading ``rank`` singular vectors of ``x`` for ``side`` (GaLore's ``get_orthogonal_matrix``)."""
    r = svd_rank(x.shape, rank)
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


def axis_norm(x: mx.array, axis: int | None) -> mx.array:
    return mx.sqrt(mx.sum(mx.square(x), axis=axis))
