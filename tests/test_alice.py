"""Alice's subspace switch and complete-QR complement against the reference, on well-conditioned matrices.

The parity rows (tests/parity/rows/alice.py) are limited to ``rank <= 3`` by the harness's 1-D
leaf; these tests cover the switch in the shapes they cannot reach, in particular the case where
the complement has fewer columns than the random draw and the non-leading eigenvectors join the
candidates.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_optim.optimizers.alice import alice_switch, complement_columns
from tests.parity.rows.alice import CanonicalAlice


@pytest.mark.parametrize(("m", "r"), [(3, 1), (5, 2), (12, 4), (40, 10), (300, 256), (9, 8)])
@pytest.mark.parametrize("kind", ["random", "orthonormal", "zero-bottom"])
def test_complement_matches_complete_qr(m, r, kind):
    rng = np.random.default_rng(m * 100 + r)
    if kind == "random":
        a = rng.normal(size=(m, r))
    elif kind == "orthonormal":
        a = np.linalg.qr(rng.normal(size=(m, m)))[0][:, :r]
    else:  # the first step's Ritz vectors: rows below r exactly zero
        a = np.zeros((m, r))
        a[:r] = np.linalg.qr(rng.normal(size=(r, r)))[0]
    a = a.astype(np.float32)
    q_ref, _ = torch.linalg.qr(torch.from_numpy(a), mode="complete")
    cols = rng.permutation(np.arange(r, m))[: max(1, (m - r) // 2)]
    got = np.array(complement_columns(mx.array(a), mx.array(cols)))
    np.testing.assert_allclose(got, q_ref.numpy()[:, cols], atol=1e-6)


def _reference_switch(q, u_prev, rank, leading, perm):
    opt = CanonicalAlice([torch.nn.Parameter(torch.zeros(1))])
    original = torch.randperm

    def randperm(n, *args, **kwargs):
        assert n == perm.size, (n, perm.size)
        return torch.from_numpy(perm.astype(np.int64))

    torch.randperm = randperm
    try:
        return opt.switch(torch.from_numpy(q), torch.from_numpy(u_prev), rank, leading).numpy()
    finally:
        torch.randperm = original


@pytest.mark.parametrize(
    ("m", "rank", "leading"),
    [(8, 3, 3), (8, 4, 1), (6, 4, 1), (6, 5, 2), (5, 5, 2), (10, 6, 2), (20, 8, 3)],
)
@pytest.mark.parametrize("first", [True, False])
def test_switch_matches_reference(m, rank, leading, first):
    rng = np.random.default_rng(m * 1000 + rank * 10 + leading)
    # A symmetric PSD matrix with well-separated eigenvalues (so every eigenvector is defined up to sign).
    basis = np.linalg.qr(rng.normal(size=(m, m)))[0]
    q = (basis * np.linspace(1.0, 3.0, m) ** 2 @ basis.T).astype(np.float32)
    u_prev = (
        np.zeros((m, rank), np.float32) if first else np.linalg.qr(rng.normal(size=(m, rank)))[0].astype(np.float32)
    )
    key = mx.random.key(rank + leading)
    n_comp = m - rank
    n_cand = n_comp + (rank - leading if n_comp < rank - leading else 0)
    perm = np.array(mx.random.permutation(n_cand, key=key))
    mine = np.array(alice_switch(mx.array(q), mx.array(u_prev), rank, leading, key))
    ref = _reference_switch(q, u_prev, rank, leading, perm)
    assert mine.shape == ref.shape == (m, rank)
    np.testing.assert_allclose(mine, ref, atol=2e-5)
    np.testing.assert_allclose(mine.T @ mine, np.eye(rank), atol=2e-5)
