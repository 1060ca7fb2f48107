"""Lookahead: the slow/fast weight merge every k steps."""

from __future__ import annotations

import mlx.core as mx


def lookahead_merge(
    p: mx.array, slow: mx.array, alpha, sync: mx.array, *, chained: bool = True
) -> tuple[mx.array, mx.array]:
    """Lookahead (Zhang et al., 2019): where ``sync``, ``slow <- slow + alpha (p - slow)`` and ``p <- slow``.

    Returns ``(p, slow)``; both are unchanged where ``sync`` is false. Both forms give the same values.
    ``chained`` reads the new ``p`` from the new ``slow`` (equal where ``sync``), so the parameter consumes the
    slow-weight output and ``mx.compile`` can update both in one kernel with the step before it
    (:mod:`mlx_optim.fusion`). It is one operation deeper; ``chained=False`` suits updates already too deep to
    fuse with the merge, which then cost three small kernels (the merge and one select per output) instead of
    cutting the update itself into more pieces.
    """
    merged = slow + alpha * (p - slow)
    if chained:
        slow = mx.where(sync, merged, slow)
        return mx.where(sync, slow, p), slow
    return mx.where(sync, merged, p), mx.where(sync, merged, slow)
