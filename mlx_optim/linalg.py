"""Matrix decompositions for the optimizers: MLX's LAPACK routines, made safe at real layer sizes.

MLX implements ``eigh``, ``svd``, ``qr``, ... only on the CPU (with LAPACK, on every platform), so every
call here runs on ``stream=mx.cpu``, also when the default device is a GPU and inside ``mx.compile``.

**Why a wrapper.** Before it decomposes, MLX asks LAPACK how much workspace the routine needs (a workspace
query, ``lwork = -1``), and LAPACK answers in a number of the matrix's own type. In float32 an integer
above :math:`2^{24} = 16{,}777{,}216` may come back rounded *down*; LAPACK then rejects the workspace it
asked for. For ``eigh`` (SSYEVD, workspace :math:`1 + 6n + 2n^2`, an odd number) that happens from
:math:`n = 2900` on: "On entry to SSYEVD parameter number 8 had an illegal value", raised as
``[Eigh::eval_cpu] ... error code -8``, or, with the reference LAPACK that MLX's Linux wheels bundle, the
process simply exits (LAPACK's XERBLA stops the program) -- a 4096-wide layer or a large embedding is
enough. Where the workspace can pass :math:`2^{24}`, :func:`eigh` and :func:`svd` decompose in float64
instead (exact workspace sizes up to :math:`2^{53}`; MLX supports float64 on the CPU) and return float32;
below that they are plain float32 calls, so small matrices give exactly the results they always gave.

The other routines the optimizers use need no such care: ``qr`` (SGEQRF/SORGQR), ``inv``/``pinv``'s LU and
``eigvalsh`` (SSYEVD without vectors) ask for workspaces linear in :math:`n` (exact up to millions of
rows); ``cholesky``, ``lu``, ``solve`` and ``solve_triangular`` ask for none.
"""

from __future__ import annotations

import mlx.core as mx

__all__ = ["FLOAT32_EXACT", "eigh", "eigh_workspace", "svd", "svd_workspace"]

FLOAT32_EXACT = 2**24  # every integer up to this is exact in float32; a workspace size above it may round down
_BLOCK = 64  # an upper bound of the block size LAPACK's ILAENV picks for the blocked steps of SGESDD


def eigh_workspace(n: int) -> int:
    """SSYEVD's workspace (in floats) for eigenvalues and eigenvectors of an ``n x n`` matrix: ``1 + 6n + 2n^2``."""
    return 1 + 6 * n + 2 * n * n


def svd_workspace(m: int, n: int, compute_uv: bool = True) -> int:
    """An upper bound of SGESDD's workspace (in floats) for an ``m x n`` matrix, as MLX calls it.

    From LAPACK's SGESDD: with singular vectors (``JOBZ='A'``) :math:`3k^2 + 7k` plus blocked-step terms for
    nearly square matrices, and :math:`k^2` more for tall or wide ones (:math:`\\max(m, n) \\ge 11k/6`),
    :math:`k = \\min(m, n)`; without vectors it is linear in the sizes.
    """
    k, big = min(m, n), max(m, n)
    blocked = (m + n) * _BLOCK
    if not compute_uv:
        return 3 * k + max(big, 7 * k) + blocked
    square_terms = 3 * k * k + 7 * k
    if 6 * big >= 11 * k:
        square_terms += k * k
    return square_terms + blocked


def _wide(a: mx.array, workspace: int) -> bool:
    """Whether ``a`` must be decomposed in float64: a float32 matrix whose workspace may not be exact."""
    return a.dtype == mx.float32 and workspace > FLOAT32_EXACT


def eigh(a: mx.array, UPLO: str = "L") -> tuple[mx.array, mx.array]:  # noqa: N803  (mx.linalg.eigh's keyword)
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix: ``mx.linalg.eigh`` on the CPU.

    A float32 matrix of side ``n >= 2895`` (SSYEVD's workspace above :math:`2^{24}`) is decomposed in float64
    and the results are returned in float32; a smaller one takes the float32 route unchanged.

    Args:
        a: a symmetric matrix (or a batch of them), float32 or float64.
        UPLO: which triangle LAPACK reads, as in ``mx.linalg.eigh``.

    Returns:
        ``(values, vectors)`` in ``a``'s dtype; ``vectors`` dense row-major (MLX returns LAPACK's column-major
        result as a transposed view, which every matmul reading a stored basis would copy again).
    """
    if _wide(a, eigh_workspace(a.shape[-1])):
        values, vectors = mx.linalg.eigh(a.astype(mx.float64, stream=mx.cpu), UPLO=UPLO, stream=mx.cpu)
        values, vectors = values.astype(a.dtype, stream=mx.cpu), vectors.astype(a.dtype, stream=mx.cpu)
    else:
        values, vectors = mx.linalg.eigh(a, UPLO=UPLO, stream=mx.cpu)
    return values, mx.contiguous(vectors, stream=mx.cpu)


def svd(a: mx.array, compute_uv: bool = True):
    """Singular value decomposition ``a = U diag(S) V^T``: ``mx.linalg.svd`` on the CPU (full ``U`` and ``V^T``).

    A float32 matrix whose SGESDD workspace (:func:`svd_workspace`) may pass :math:`2^{24}` (with vectors:
    square from 2343 on, tall or wide from a smaller side of about 2024 on) is decomposed in float64 and the
    results are returned in float32; a smaller one takes the float32 route unchanged.

    Args:
        a: a matrix (or a batch of them), float32 or float64.
        compute_uv: return ``(U, S, V^T)`` when true, else the singular values ``S`` only.

    Returns:
        ``(U, S, Vt)`` or ``S`` in ``a``'s dtype.
    """
    m, n = a.shape[-2], a.shape[-1]
    if not _wide(a, svd_workspace(m, n, compute_uv)):
        return mx.linalg.svd(a, compute_uv=compute_uv, stream=mx.cpu)
    out = mx.linalg.svd(a.astype(mx.float64, stream=mx.cpu), compute_uv=compute_uv, stream=mx.cpu)
    if not compute_uv:
        return out.astype(a.dtype, stream=mx.cpu)
    return tuple(x.astype(a.dtype, stream=mx.cpu) for x in out)
