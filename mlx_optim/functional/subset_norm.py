"""Subset-norm second moments (AdamWSN and the _sn variants): one value per subset of a tensor."""

from __future__ import annotations

import math

import mlx.core as mx


def sn_reduce(x: mx.array, v: mx.array) -> mx.array:
    """``x`` (parameter-shaped, e.g. ``g**2``) summed over the subsets of the second moment ``v``.

    The identity when ``v`` has ``x``'s shape (subset norm off).
    """
    if v.shape == x.shape:
        return x
    return mx.sum(x.reshape(v.shape[0], -1), axis=1, keepdims=True)


def sn_expand(v: mx.array, shape: tuple[int, ...]) -> mx.array:
    """A per-subset ``v`` of shape ``(rows, 1)`` broadcast back to the parameter ``shape`` (identity if equal)."""
    if tuple(v.shape) == tuple(shape):
        return v
    rows = v.shape[0]
    size = math.prod(shape)
    return mx.broadcast_to(v, (rows, size // rows)).reshape(shape)


def subset_size_for(size: int, subset_size: int) -> int:
    """AdamWSN's subset length: the largest divisor of ``size`` not above the requested length."""
    k = subset_size if subset_size > 0 else int(math.sqrt(size) / abs(subset_size))
    return closest_smaller_divisor(size, max(k, 1))


def closest_smaller_divisor(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is ``<= k`` (pytorch_optimizer's ``closest_smaller_divisor_of_n_to_k``)."""
    if k >= 1 and n % k == 0:
        return k
    if n <= 1 or k <= 1:
        raise ValueError(f"AdamWSN: no subset size <= {k} divides a tensor of {n} elements")
    for i in range(k, 0, -1):
        if n % i == 0:
            return i
    return 1  # pragma: no cover
