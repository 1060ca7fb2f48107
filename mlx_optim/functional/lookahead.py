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
    return lookahead_select(p, slow, slow + alpha * (p - slow), sync, chained=chained)


def lookahead_select(
    p: mx.array, slow: mx.array, merged: mx.array, sync: mx.array, *, chained: bool = True
) -> tuple[mx.array, mx.array]:
    """The Lookahead merge given the merged weights: where ``sync``, ``p <- merged`` and ``slow <- merged``.

    Returns ``(p, slow)``, unchanged where ``sync`` is false; ``chained`` as in :func:`lookahead_merge`.
    The callers form ``merged`` as their reference does: :func:`lookahead_merge` as ``slow + alpha (p - slow)``
    (the Ranger line), the Lookahead feature with ``torch.lerp``'s two-sided formula and the Lookahead wrapper
    (also for its slow momentum) as ``lerp(p, slow, 1 - alpha)``.
    """
    if chained:
        slow = mx.where(sync, merged, slow)
        return mx.where(sync, slow, p), slow
    return mx.where(sync, merged, p), mx.where(sync, merged, slow)
