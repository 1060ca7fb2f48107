"""Optimizer state is stored dense (row-major), so that the matmuls of the next steps read it as it is.

MLX's CPU matmul copies an operand that is not dense row-major or its plain transpose, at every use: SOAP kept its
first eigenbasis as a flipped view (``mx.flip``, negative strides) and each of the six projections of every step
copied it again (1024 x 1024: 84.4 ms a step, 65.0 ms stored dense, one run); ``mx.linalg.eigh`` returns LAPACK's
column-major eigenvectors as a transposed view, stored by SPlus, and Alice's subspace switch one too.

The exceptions hold the gradient as it came (its layout is the model's: a ``Linear`` weight's gradient is a
transposed product) and are only read element-wise.
"""

from __future__ import annotations

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from tests.test_contract import NAMES, batches, make_model, make_opt, train

GRADIENT_COPIES = {"previous_grad", "last_grad", "old_g", "e_w", "old_grad_p", "grad"}


def dense(x: mx.array) -> bool:
    """Whether ``x``'s memory is dense row-major (strides of size-1 dimensions do not matter)."""
    expected, step = [], x.itemsize
    for d in reversed(x.shape):
        expected.append(step)
        step *= d
    return all(s == e for s, e, d in zip(memoryview(x).strides, reversed(expected), x.shape) if d > 1)


def test_dense_detects_views():
    a = mx.random.normal((4, 3))
    assert dense(a) and dense(mx.contiguous(a.T))
    assert not dense(mx.flip(a, axis=1)) and not dense(a.T) and not dense(a[:, :2])


def strided_views(opt) -> list[str]:
    return [
        k
        for k, v in tree_flatten(opt.state)
        if isinstance(v, mx.array)
        and v.ndim >= 2
        and v.size
        and k.rsplit(".", 1)[-1] not in GRADIENT_COPIES
        and not dense(v)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_state_matrices_are_dense(name):
    model, opt = make_model(name=name), make_opt(name)
    data = list(batches(12))
    train(model, opt, data[:2])  # the first step's bases
    assert not strided_views(opt), f"{name}: state stored as strided views after 2 steps: {strided_views(opt)}"
    train(model, opt, data[2:])  # past the first refresh of the periodic ones (every 10 steps by default)
    assert not strided_views(opt), f"{name}: state stored as strided views after 12 steps: {strided_views(opt)}"
