"""Properties of the GaLore-style projections in mlx_optim/optimizers/lowrank.py.

Parity with pytorch_optimizer is in tests/parity/rows/lowrank.py (with a common SVD sign
convention and, for APOLLO, shared random draws); these tests check our own projections.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import mlx_optim
from mlx_optim.functional.projections import (
    canonical_svd,
    project,
    project_back,
    projection_side,
    random_basis,
    svd_basis,
)


def _matrix(m, n, seed=0):
    return mx.array(np.random.default_rng(seed).normal(size=(m, n)).astype(np.float32))


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (6, 6)])
def test_canonical_svd_reconstructs_with_fixed_signs(shape):
    x = _matrix(*shape)
    u, vt = canonical_svd(x)
    s = np.linalg.svd(np.array(x), compute_uv=False)
    np.testing.assert_allclose(np.array(u) @ np.diag(s) @ np.array(vt), np.array(x), atol=1e-5)
    un = np.array(u)
    assert np.all(un[np.abs(un).argmax(axis=0), np.arange(un.shape[1])] > 0)
    # the convention does not depend on the input's sign or scale
    u2, _ = canonical_svd(-3.0 * x)
    np.testing.assert_allclose(np.array(u2), un, atol=1e-5)


@pytest.mark.parametrize("projection_type", ["std", "reverse_std", "left", "right", "full"])
@pytest.mark.parametrize("shape", [(12, 7), (7, 12)])
def test_svd_basis_is_orthonormal_and_captures_the_top_energy(projection_type, shape):
    rank = 3
    x = _matrix(*shape, seed=1)
    side = projection_side(shape, projection_type)
    basis = svd_basis(x, side, rank)
    for b in basis:
        b = np.array(b)
        gram = b.T @ b if b.shape[0] > b.shape[1] else b @ b.T
        np.testing.assert_allclose(gram, np.eye(rank), atol=1e-5)
    s = np.linalg.svd(np.array(x), compute_uv=False)
    captured = float(mx.sum(mx.square(project(x, basis, side))))
    np.testing.assert_allclose(captured, np.sum(s[:rank] ** 2), rtol=1e-5)
    # projecting back a projected gradient is the best rank-r approximation
    approx = np.array(project_back(project(x, basis, side), basis, side, 1.0))
    np.testing.assert_allclose(np.sum((np.array(x) - approx) ** 2), np.sum(s[rank:] ** 2), rtol=1e-4)


def test_random_basis_statistics_and_determinism():
    key = mx.random.key(7)
    left, right = random_basis(key, (400, 300), "full", 64)
    for b in (np.array(left), np.array(right)):
        assert abs(b.mean()) < 3e-3
        np.testing.assert_allclose(b.var(), 1 / 64, rtol=0.03)
    again = random_basis(key, (400, 300), "full", 64)
    np.testing.assert_array_equal(np.array(again[0]), np.array(left))
    # E[P P^T] = I for P = right^T scaled by 1/sqrt(r): projections preserve norms on average
    g = _matrix(50, 300, seed=2)
    ratio = float(mx.sum(mx.square(project(g, (right,), "right")))) / float(mx.sum(mx.square(g)))
    assert 0.8 < ratio < 1.2


def _params():
    return {"w": _matrix(6, 4, seed=3), "v": _matrix(4, 6, seed=4), "bias": mx.zeros((4,))}


def _grads(t):
    return {k: _matrix(*v.shape, seed=10 + t) if v.ndim == 2 else mx.ones(v.shape) for k, v in _params().items()}


@pytest.mark.parametrize("name", ["galore", "fira", "conda", "apollo"])
def test_projection_filter_selects_leaves(name):
    opt = mlx_optim.load_optimizer(name)(learning_rate=1e-2, projection_filter=lambda path, p: path == "w")
    opt.apply_gradients(_grads(0), _params())
    assert any(k.startswith("proj_") for k in opt.state["w"])
    assert not any(k.startswith("proj_") for k in opt.state["v"])
    assert opt.state["v"]["exp_avg_sq"].shape == (4, 6) and opt.state["bias"]["exp_avg"].shape == (4,)


@pytest.mark.parametrize("name", ["galore", "apollo"])
def test_basis_changes_only_on_refresh_steps(name):
    opt = mlx_optim.load_optimizer(name)(learning_rate=1e-2, rank=2, update_proj_gap=3)
    params = _params()
    bases = []
    for t in range(7):
        params = opt.apply_gradients(_grads(t), params)
        mx.eval(params, opt.state)
        bases.append(np.array(opt.state["w"]["proj_right"]))
    changed = [not np.array_equal(bases[i], bases[i - 1]) for i in range(1, 7)]
    assert changed == [False, True, False, False, True, False]  # steps 3 and 6 refresh (step 1 set it)


def test_apollo_seed_is_reproducible_and_leaves_differ():
    def run(seed):
        opt = mlx_optim.load_optimizer("apollo")(learning_rate=1e-2, rank=3, seed=seed)
        opt.apply_gradients(_grads(0), _params())
        return np.array(opt.state["w"]["proj_right"]), np.array(opt.state["v"]["proj_left"])

    a, b = run(0), run(0)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(run(1)[0], a[0])
    assert not np.allclose(a[0][:, :3], a[1][:3].T)  # independent keys per leaf
