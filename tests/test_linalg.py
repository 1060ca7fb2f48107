"""Matrix functions at real sizes (issue 15 items 1 and 2): no multi-operand einsum, LAPACK workspaces that stay
exact, and ScalableShampoo's inverse roots only on refresh steps. The optimizers at full size are in
tests/test_real_size.py; these tests are the cheap, targeted ones."""

from __future__ import annotations

import ast
import pathlib

import mlx.core as mx
import numpy as np
import pytest

import mlx_optim
from mlx_optim import linalg
from mlx_optim.optimizers import kron as pc
from mlx_optim.optimizers import scalableshampoo as ss

PACKAGE = pathlib.Path(mlx_optim.__file__).parent


# ----------------------------------------------------------------------------- item 1: einsum


def _einsum_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "einsum":
            yield node


def test_no_einsum_with_three_or_more_operands_in_the_package():
    """MLX's einsum path search overflows its FLOP count for 2048-wide operands and then runs the naive
    contraction over every index (Kron crashed the process on a 2048x2048 parameter); contractions of three or
    more operands are written as pairwise products instead. A starred operand list counts as many operands."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for call in _einsum_calls(ast.parse(path.read_text())):
            operands = call.args[1:]
            if len(operands) >= 3 or any(isinstance(a, ast.Starred) for a in operands):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{call.lineno}")
    assert not offenders, f"multi-operand mx.einsum calls: {offenders}"


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((5, 6), {}),
        ((2, 3, 4), {}),
        ((6, 5), {"memory_save_mode": "one_diag"}),
        ((2, 3, 4), {"memory_save_mode": "smart_one_diag", "max_size_triangular": 3}),
        ((7,), {"min_ndim_triangular": 1}),
        ((3, 1, 4), {}),
    ],
)
def test_kron_contractions_equal_the_reference_einsum_specs(shape, kwargs):
    """The pairwise contractions give what the reference's einsum specs (``kron_structure``) say, per layout."""
    opt = mlx_optim.Kron(**kwargs)
    diag, (expr_a, expr_gs, expr_r) = opt._structure(shape)
    keys = mx.random.split(mx.random.key(1), len(shape) + 1)
    qs = [
        mx.random.normal((d,), key=k) if is_diag else mx.triu(mx.random.normal((d, d), key=k))
        for d, is_diag, k in zip(shape, diag, keys)
    ]
    g = mx.random.normal(shape, key=keys[-1])
    a = pc.kron_apply(qs, g)
    np.testing.assert_allclose(a, mx.einsum(expr_a, *qs, g), rtol=1e-5, atol=1e-5)
    for i, expr_g in enumerate(expr_gs):
        np.testing.assert_allclose(pc.kron_gram(a, i, diag[i]), mx.einsum(expr_g, a, a), rtol=1e-5, atol=1e-4)
    u = pc.kron_apply(qs, pc.kron_apply(qs, g), transpose=True)
    np.testing.assert_allclose(u, mx.einsum(expr_r, *qs, *qs, g), rtol=1e-5, atol=1e-4)


def test_kron_step_calls_no_multi_operand_einsum(monkeypatch):
    def guarded(spec, *operands, **kw):
        assert len(operands) < 3, f"mx.einsum({spec!r}) with {len(operands)} operands"
        return real(spec, *operands, **kw)

    real = mx.einsum
    monkeypatch.setattr(mx, "einsum", guarded)
    params = {"w": mx.ones((6, 5)), "t": mx.ones((2, 3, 4)), "b": mx.ones((5,))}
    grads = {k: mx.random.normal(v.shape, key=mx.random.key(i)) for i, (k, v) in enumerate(params.items())}
    out = mlx_optim.Kron(learning_rate=1e-2).apply_gradients(grads, params)
    mx.eval(out)


# ----------------------------------------------------------------------------- item 2: LAPACK workspaces


def test_the_float32_workspace_threshold():
    """SSYEVD's workspace 1 + 6n + 2n^2 is exact in float32 up to n = 2894; at 2900 it rounds *down* (the
    failure the issue reproduced: n = 2890 works, 2900 fails), so from 2895 on eigh decomposes in float64."""
    assert linalg.eigh_workspace(2894) <= linalg.FLOAT32_EXACT < linalg.eigh_workspace(2895)
    assert int(np.float32(linalg.eigh_workspace(2900))) < linalg.eigh_workspace(2900)
    assert int(np.float32(linalg.eigh_workspace(4096))) < linalg.eigh_workspace(4096)
    # SGESDD (svd with vectors): 3n^2 + 7n for a square matrix, n^2 more for a tall one
    assert linalg.svd_workspace(2048, 2048) <= linalg.FLOAT32_EXACT < linalg.svd_workspace(2343, 2343)
    assert linalg.svd_workspace(4096, 512) <= linalg.FLOAT32_EXACT
    assert linalg.svd_workspace(4096, 4096, compute_uv=False) <= linalg.FLOAT32_EXACT


@pytest.mark.parametrize("n", [1, 5, 64])
def test_small_matrices_keep_the_float32_route_bit_for_bit(n):
    a = mx.random.normal((n, n), key=mx.random.key(n))
    s = a @ a.T
    for mine, theirs in zip(linalg.eigh(s), mx.linalg.eigh(s, stream=mx.cpu)):
        assert mine.dtype == mx.float32
        np.testing.assert_array_equal(mine, theirs)
    b = mx.random.normal((n + 3, n), key=mx.random.key(n + 1))
    for mine, theirs in zip(linalg.svd(b), mx.linalg.svd(b, stream=mx.cpu)):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(linalg.svd(b, compute_uv=False), mx.linalg.svd(b, compute_uv=False, stream=mx.cpu))


def test_large_matrices_take_the_float64_route(monkeypatch):
    """Above the threshold the decomposition runs in float64 and comes back in float32 (checked on the dtype
    that reaches mx.linalg, without paying for a 2900-wide decomposition here: tests/test_real_size.py does)."""
    seen = []
    real_eigh, real_svd = mx.linalg.eigh, mx.linalg.svd

    def eigh(a, *args, **kw):
        seen.append(("eigh", a.shape[-1], a.dtype))
        return real_eigh(a[..., :2, :2], *args, **kw)

    def svd(a, *args, **kw):
        seen.append(("svd", a.shape[-1], a.dtype))
        return real_svd(a[..., :2, :2], *args, **kw)

    monkeypatch.setattr(mx.linalg, "eigh", eigh)
    monkeypatch.setattr(mx.linalg, "svd", svd)
    for n in (2894, 2895):
        values, vectors = linalg.eigh(mx.zeros((n, n)))
        assert values.dtype == vectors.dtype == mx.float32
    for n in (2342, 2343):
        u, s, vt = linalg.svd(mx.zeros((n, n)))
        assert u.dtype == s.dtype == vt.dtype == mx.float32
    assert seen == [
        ("eigh", 2894, mx.float32),
        ("eigh", 2895, mx.float64),
        ("svd", 2342, mx.float32),
        ("svd", 2343, mx.float64),
    ]


def test_optimizers_decompose_through_the_safe_wrappers(monkeypatch):
    """Every eigh / svd an optimizer runs goes through mlx_optim.linalg (so through the float64 route when
    needed): the raw MLX calls are forbidden for the duration of their steps."""
    calls = []

    def forbidden(name):
        def f(*a, **kw):
            raise AssertionError(f"mx.linalg.{name} called directly")

        return f

    real_eigh, real_svd = mx.linalg.eigh, mx.linalg.svd
    monkeypatch.setattr(mx.linalg, "eigh", forbidden("eigh"))
    monkeypatch.setattr(mx.linalg, "svd", forbidden("svd"))
    monkeypatch.setattr(linalg, "eigh", lambda a, UPLO="L": calls.append("eigh") or real_eigh(a, stream=mx.cpu))
    monkeypatch.setattr(
        linalg, "svd", lambda a, compute_uv=True: calls.append("svd") or real_svd(a, compute_uv, stream=mx.cpu)
    )
    params = {"w": mx.ones((70, 66)) * 0.1 + mx.eye(70, 66), "b": mx.ones((66,))}
    grads = {k: mx.random.normal(v.shape, key=mx.random.key(i)) for i, (k, v) in enumerate(params.items())}
    for name, kw in [
        ("shampoo", {}),
        ("soap", {}),
        ("splus", {}),
        ("dash", {"inverse_root_method": "eigh"}),
        ("galore", {}),
        ("sara", {"lambda_rank": 0.1}),
        ("scalableshampoo", {"use_svd": True, "preconditioning_compute_steps": 1}),
    ]:
        calls.clear()
        opt = mlx_optim.load_optimizer(name)(**kw)
        mx.eval(opt.apply_gradients(grads, params))
        assert calls, f"{name} ran no decomposition"


# ----------------------------------------------------------------------------- ScalableShampoo's refresh schedule


def _shampoo_problem():
    params = {"w": mx.ones((12, 10)) * 0.1, "t": mx.ones((3, 4, 5)) * 0.1, "b": mx.ones((9,)) * 0.1}
    keys = mx.random.split(mx.random.key(7), 6)
    grads = [
        {k: mx.random.normal(v.shape, key=mx.random.split(keys[s], 3)[i]) for i, (k, v) in enumerate(params.items())}
        for s in range(6)
    ]
    return params, grads


def test_scalableshampoo_computes_roots_only_on_refresh_steps(monkeypatch):
    """Like the reference, the inverse roots (the expensive part: up to 100 Schur-Newton iterations of four
    block-sized matmuls per block factor) are computed on refresh steps only; they used to be computed every step
    and thrown away by mx.where (over 240 s for two steps on a 2048x2048 + 4096x512 tree)."""
    calls = []
    real = ss.inverse_root_schur_newton
    monkeypatch.setattr(ss, "inverse_root_schur_newton", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    params, grads = _shampoo_problem()
    for fused in (False, True):
        opt = mlx_optim.ScalableShampoo(learning_rate=1e-2, block_size=4, preconditioning_compute_steps=3)
        opt.fuse_updates = fused
        p, per_step = params, []
        for g in grads:
            calls.clear()
            p = opt.apply_gradients(g, p)
            mx.eval(p, opt.state)
            per_step.append(len(calls))
        factors = sum(k.startswith("pre_conditioner_") for leaf in params for k in opt.state[leaf])
        assert per_step == [0, 0, factors, 0, 0, factors], (fused, per_step)
        assert all(kw.get("early_stop") for kw in calls)


def test_scalableshampoo_schedule_is_the_same_eager_fused_and_compiled():
    """The host-side schedule (eager and fused apply_gradients) and the array logic (inside mx.compile, where the
    step counter cannot be read) give the same parameters, refresh steps included."""
    params, grads = _shampoo_problem()
    runs = []
    for mode in ("eager", "fused", "compiled"):
        opt = mlx_optim.ScalableShampoo(
            learning_rate=1e-2, block_size=4, preconditioning_compute_steps=2, start_preconditioning_step=2
        )
        opt.fuse_updates = mode == "fused"
        holder = {"p": params}

        def step(g, opt=opt, holder=holder):
            holder["p"] = opt.apply_gradients(g, holder["p"])
            return holder["p"]

        if mode == "compiled":
            opt.init(params)
            step = mx.compile(step, inputs=[opt.state, holder], outputs=[opt.state, holder])
        for g in grads:
            mx.eval(step(g), opt.state)
        runs.append({k: np.array(v) for k, v in holder["p"].items()})
    for other in runs[1:]:
        for k in runs[0]:
            np.testing.assert_allclose(other[k], runs[0][k], rtol=1e-6, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_schur_newton_early_stop_is_the_frozen_result(seed):
    x = mx.random.normal((24, 40), key=mx.random.key(seed))
    mat = x @ x.T / 40
    frozen = ss.inverse_root_schur_newton(mat, 4)
    stopped = ss.inverse_root_schur_newton(mat, 4, early_stop=True)
    np.testing.assert_array_equal(stopped, frozen)
