"""``u @ u.T`` through OpenBLAS's SYRK (mlx_optim/native/bf16gemm.cpp ``Gram``), used by SOAP, Shampoo,
ScalableShampoo, SPlus, Kron and Alice for their float32 statistics where MLX runs on OpenBLAS."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_optim import blas, native
from mlx_optim.functional import matrix

on_openblas = pytest.mark.skipif(
    "openblas" not in (blas.loaded_library() or ""),
    reason="MLX does not run on OpenBLAS here (apt-get install libopenblas0-pthread)",
)


@pytest.fixture(autouse=True)
def _native(monkeypatch):
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "1")


def exact(u: mx.array) -> np.ndarray:
    x = np.array(u, dtype=np.float64)
    return x @ x.T


@on_openblas
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 200), (300, 97), (700, 1030)])
def test_gram_is_u_ut_and_exactly_symmetric(shape):
    assert native.gram_available(), native.gram_unavailable_reason()
    u = mx.random.normal(shape, key=mx.random.key(1))
    cases = [u, mx.random.normal(shape[::-1], key=mx.random.key(2)).T, u[:, ::2], u[::2]]  # dense, transposed, strided
    for v in cases:
        out = native.gram(v)
        assert out.shape == (v.shape[0], v.shape[0]) and out.dtype == mx.float32
        assert mx.array_equal(out, out.T).item()  # the mirrored triangle, not a second sum
        np.testing.assert_allclose(np.array(out), exact(v), rtol=2e-5, atol=2e-5 * v.shape[1])
    assert mx.array_equal(native.gram(mx.zeros((3, 0))), mx.zeros((3, 3))).item()
    with pytest.raises(ValueError, match="2-D float32"):
        native.gram(u.astype(mx.bfloat16))
    with pytest.raises(ValueError, match="2-D float32"):
        native.gram(mx.zeros((2, 3, 4)))


@on_openblas
def test_matrix_gram_uses_it_for_float32_only(monkeypatch):
    calls = []
    provider = matrix._gram_provider

    def spy():
        g = provider()
        calls.append(g is not None)
        return g

    monkeypatch.setattr(matrix, "_gram_provider", spy)
    u = mx.random.normal((40, 60), key=mx.random.key(3))
    assert mx.array_equal(matrix.gram(u), native.gram(u)).item()
    assert mx.allclose(matrix.gram(u.astype(mx.bfloat16)).astype(mx.float32), u @ u.T, rtol=2e-2, atol=0.5).item()
    assert calls == [True]  # bfloat16 went to MLX's matmul without asking
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "0")
    assert mx.array_equal(matrix.gram(u), u @ u.T).item()
    assert calls == [True, False]


@on_openblas
@pytest.mark.parametrize("name", ["soap", "shampoo", "splus"])
def test_optimizers_with_it_match_mlx_matmul(name, monkeypatch):
    """Three steps with the SYRK statistics against the same steps with MLX's matmul (different summation order:
    float32 rounding apart, not equal)."""
    from mlx_optim import load_optimizer

    w = mx.random.normal((48, 80), key=mx.random.key(4)) * 0.1
    grads = [mx.random.normal((48, 80), key=mx.random.key(5 + i)) for i in range(3)]
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MLX_OPTIM_NATIVE", flag)
        opt, params = load_optimizer(name)(learning_rate=1e-2), {"w": w}
        for g in grads:
            params = opt.apply_gradients({"w": g}, params)
        out[flag] = params["w"]
    moved = mx.max(mx.abs(out["0"] - w)).item()
    assert moved > 1e-3
    assert mx.max(mx.abs(out["1"] - out["0"])).item() < 1e-4 * moved + 1e-6


def test_not_used_on_mkl(monkeypatch):
    """MKL's SYRK was slower than its GEMM at 1024 (8.3 against 6.5 ms): only OpenBLAS's is used."""
    monkeypatch.setattr(blas, "loaded_library", lambda: "/opt/lib/libmkl_rt.so.2")
    monkeypatch.setattr(native, "_gram_state", None)
    assert not native.gram_available()
    assert native.gram_unavailable_reason() == "MLX does not run on OpenBLAS"
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "0")
    assert native.gram_unavailable_reason() == "MLX_OPTIM_NATIVE=0"
