"""The native bfloat16 GEMM (MKL's cblas_gemm_bf16bf16f32, mlx_optim/native/bf16gemm.cpp) and its use by the
Newton-Schulz iterations. Needs the ``native`` extra (nanobind, mkl) and g++: no skip, CI installs them. The loop's
AMX engine (amx.h) runs where the processor has AMX-BF16; elsewhere its cases skip, naming the reason."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_optim import native
from mlx_optim.functional import matrix

f32, bf16 = mx.float32, mx.bfloat16


@pytest.fixture(autouse=True)
def _cpu_native(monkeypatch):
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "1")
    assert native.bf16_available(), native.bf16_unavailable_reason()


def keys(x: mx.array) -> np.ndarray:
    """bfloat16 values as integers in the order of the values (one apart = one ulp apart)."""
    bits = np.array(x.astype(bf16).view(mx.uint16)).astype(np.int32)
    return np.where(bits & 0x8000, -(bits & 0x7FFF), bits)


def ulps(x: mx.array, y: mx.array) -> int:
    return int(np.abs(keys(x) - keys(y)).max())


def rand(shape, seed, scale=1.0):
    return (mx.random.normal(shape, key=mx.random.key(seed)) * scale).astype(bf16)


def rounded(x: mx.array) -> mx.array:
    return x.astype(bf16)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 13, 5), (64, 96, 64), (300, 200, 150), (256, 1024, 256)])
def test_matmul_is_the_float32_product_rounded_once(m, k, n):
    a, b = rand((m, k), 1), rand((k, n), 2)
    out = native.bf16_matmul(a, b)
    assert out.dtype == bf16 and out.shape == (m, n)
    want = rounded(a.astype(f32) @ b.astype(f32))
    assert ulps(out, want) <= 1
    assert mx.mean((out == want).astype(f32)).item() > 0.99  # differs only where the float32 sums round differently


def test_views_transposes_and_strided_inputs():
    a, b = rand((40, 70), 3), rand((90, 40), 4)
    full = rand((80, 150), 5)
    cases = [
        (a, rand((30, 70), 16).T),  # a transposed operand
        (a.T, a),  # (70, 70)
        (full[::2, ::3][:, :40], b.T[:40, :50]),  # a strided view (copied)
        (full[10:50, 20:60], full[0:40, 100:140]),  # offsets and row strides
    ]
    for x, y in cases:
        want = rounded(x.astype(f32) @ y.astype(f32))
        assert ulps(native.bf16_matmul(x, y), want) <= 1


def test_addmm_and_float32_output():
    a, b = rand((50, 60), 6), rand((60, 40), 7)
    c16, c32 = rand((50, 40), 8), mx.random.normal((50, 40), key=mx.random.key(9))
    for c in (c16, c32, c16.T.T, rand((40, 50), 10).T):
        want = rounded(-4.775 * c.astype(f32) + 2.0315 * (a.astype(f32) @ b.astype(f32)))
        assert ulps(native.bf16_gemm(a, b, c, 2.0315, -4.775), want) <= 1
    exact = a.astype(f32) @ b.astype(f32)
    out = native.bf16_gemm(a, b, f32_out=True)
    assert out.dtype == f32
    assert mx.allclose(out, exact, rtol=1e-5, atol=1e-5).item()


def test_matches_torch_bf16_matmul_and_addmm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 384, generator=g).bfloat16()
    y = torch.randn(384, 256, generator=g).bfloat16()
    z = torch.randn(512, 256, generator=g).bfloat16()

    def to_mx(t):
        return mx.array(t.float().numpy()).astype(bf16)

    assert ulps(native.bf16_matmul(to_mx(x), to_mx(y)), to_mx(x @ y)) <= 1
    assert (
        ulps(native.bf16_gemm(to_mx(x), to_mx(y), to_mx(z), 1.0, 3.4445), to_mx(torch.addmm(z, x, y, beta=3.4445))) <= 1
    )


def test_bad_inputs_raise():
    a = rand((4, 5), 11)
    with pytest.raises(ValueError, match="bfloat16"):
        native.bf16_matmul(a.astype(f32), a.T)
    with pytest.raises(ValueError, match="match"):
        native.bf16_matmul(a, a)
    with pytest.raises(ValueError, match="c must be"):
        native.bf16_gemm(a, a.T, a)
    with pytest.raises(ValueError, match="2-D bfloat16"):
        native.bf16_newton_schulz(a.astype(f32), [(1.0, 0.0, 0.0)])


HAS_AMX = native.bf16_available() and native.amx_available()


@pytest.fixture(
    params=[False, pytest.param(True, marks=pytest.mark.skipif(not HAS_AMX, reason="no AMX here"))], ids=["mkl", "amx"]
)
def amx(request):
    """The loop's engine: MKL's GEMM, or AMX tiles."""
    return request.param


def _spy(monkeypatch):
    used = []
    provider = matrix._bf16_ns_provider
    assert provider is not None  # registered by importing mlx_optim.native

    def spy():
        iterate = provider()
        used.append(iterate is not None)
        return iterate

    monkeypatch.setattr(matrix, "_bf16_ns_provider", spy)
    return used


def normalized(g: mx.array) -> mx.array:
    """The iterations' starting point, as matrix.newton_schulz computes it (wide orientation)."""
    x = (g.T if g.shape[0] > g.shape[1] else g).astype(bf16)
    n = mx.sqrt(mx.sum(mx.square(x.astype(f32)))).astype(bf16)
    return (x.astype(f32) / mx.maximum(n, mx.array(1e-7).astype(bf16)).astype(f32)).astype(bf16)


@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (33, 65), (64, 96), (96, 64), (300, 700), (512, 512)])
def test_fused_loop_is_three_gemms_per_step(shape, amx):
    """bf16_newton_schulz (one task, either engine) against the same step written as three bf16_gemm calls; the
    fused loop adds the C term after the plain product instead of through MKL's beta, so a few entries may differ by
    one ulp. The shapes cover AMX's zero padding (sides not multiples of 32)."""
    x = normalized(mx.random.normal(shape, key=mx.random.key(21)))
    schedule = matrix.NS_COEFFICIENTS["quintic"][:3]
    fused = native.bf16_newton_schulz(x, schedule, amx=amx)
    want = x
    for w0, w1, w2 in schedule:
        a = native.bf16_gemm(want, want.T)
        b = native.bf16_gemm(a, a, a, w2, w1)
        want = native.bf16_gemm(b, want, want, 1.0, w0)
    one = native.bf16_newton_schulz(x, schedule[:1], amx=amx)
    w0, w1, w2 = schedule[0]
    a = native.bf16_gemm(x, x.T)
    first = native.bf16_gemm(native.bf16_gemm(a, a, a, w2, w1), x, x, 1.0, w0)
    assert fused.dtype == bf16 and fused.shape == x.shape
    # B's rounding may differ by one ulp in a few entries (float32 sums in another order), and B X carries that on
    assert ulps(one, first) <= 2
    assert mx.mean((one == first).astype(f32)).item() > 0.999
    assert mx.max(mx.abs(fused.astype(f32) - want.astype(f32))).item() < 2e-2
    assert mx.array_equal(native.bf16_newton_schulz(x, [], amx=amx), x).item()  # no step: the iterate, copied
    empty = native.bf16_newton_schulz(mx.zeros((0, 4), bf16), schedule, amx=amx)
    assert mx.array_equal(empty, mx.zeros((0, 4), bf16)).item()


@pytest.mark.parametrize("shape", [(1024, 1100), (1700, 1800)])
def test_symmetric_blocks_are_the_full_products(shape, amx):
    """MKL's loop computes A = X X^T and A A from 1024 rows in row blocks on and above the diagonal (2 blocks at
    1024; 3 at 1700, the last one 548 rows ending in a partial 64 x 64 tile), AMX's in 32 x 32 blocks (1700: a
    partial last one), and mirrors them: one step against three full bf16_gemm calls (which round each entry of the
    other triangle from its own float32 sum)."""
    x = normalized(mx.random.normal(shape, key=mx.random.key(22)))
    w0, w1, w2 = matrix.NS_COEFFICIENTS["original"][0]
    a = native.bf16_gemm(x, x.T)
    want = native.bf16_gemm(native.bf16_gemm(a, a, a, w2, w1), x, x, 1.0, w0)
    one = native.bf16_newton_schulz(x, [(w0, w1, w2)], amx=amx)
    # entries up to ~5e-3 (one ulp there: 3e-5); where an entry cancels to ~1e-9, one ulp of an operand is many of it
    assert mx.max(mx.abs(one.astype(f32) - want.astype(f32))).item() <= 3.1e-5
    # a wrong mirror (a block left unfilled or transposed wrongly) would change whole rows of X, not single ulps
    assert mx.mean((one == want).astype(f32)).item() > 0.999


@pytest.mark.parametrize("dtype", [f32, bf16, mx.float16])
def test_normalization_in_the_task_is_matrix_newton_schulz(dtype, amx):
    """With eps the task rounds, normalizes and iterates: equal to normalizing in MLX and iterating, for each input
    dtype and for a transposed (strided) view."""
    g = mx.random.normal((300, 700), key=mx.random.key(23)).astype(dtype)
    schedule = matrix.NS_COEFFICIENTS["quintic"][:2]
    for x in (g, g.T.T, mx.random.normal((700, 300), key=mx.random.key(24)).astype(dtype).T):
        # the task sums the squares in float64 (MLX in float32: its norm may round to the neighbouring bfloat16)
        x16 = x.astype(bf16)
        norm = mx.array(np.sqrt(np.sum(np.square(np.array(x16.astype(f32), dtype=np.float64)))), f32).astype(bf16)
        start = (x16.astype(f32) / norm.astype(f32)).astype(bf16)
        assert mx.array_equal(native.bf16_newton_schulz(x, [], 1e-7, amx=amx), start).item()
        assert ulps(start, normalized(x)) <= 2  # a norm one bfloat16 ulp apart moves the quotients up to 2 ulps
        want = native.bf16_newton_schulz(start, schedule, amx=amx)
        assert mx.array_equal(native.bf16_newton_schulz(x, schedule, 1e-7, amx=amx), want).item()
    zero = native.bf16_newton_schulz(mx.zeros((4, 6), dtype), schedule[:1], 1e-7, amx=amx)  # the norm is eps: no NaN
    assert mx.array_equal(zero, mx.zeros((4, 6), bf16)).item()


def test_array_eps_is_normalized_by_mlx(monkeypatch):
    """A traced eps (MARS's hyperparameter inside mx.compile) cannot reach the task: MLX normalizes, the task
    iterates."""
    used = _spy(monkeypatch)
    g = mx.random.normal((48, 64), key=mx.random.key(25))
    step = mx.compile(lambda g, eps: matrix.newton_schulz(g, 2, eps=eps, dtype=bf16))
    assert mx.array_equal(step(g, mx.array(1e-7)), matrix.newton_schulz(g, 2, dtype=bf16)).item()
    assert used == [True, True]


def test_newton_schulz_matches_torch_reference():
    from pytorch_optimizer.optimizer.utils.matrix import zero_power_via_newton_schulz_5

    for shape in [(256, 384), (384, 256)]:
        g = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
        want = zero_power_via_newton_schulz_5(g).float().numpy()
        out = matrix.newton_schulz5(mx.array(g.numpy()), 5, dtype=bf16)
        assert out.dtype == bf16 and out.shape == shape
        # torch's oneDNN and MKL sum the products in different orders: bfloat16 ulps of the largest entries
        assert np.abs(np.array(out.astype(f32)) - want).max() < 8e-3


@pytest.mark.parametrize("fn", [matrix.newton_schulz, matrix.newton_schulz5])
def test_newton_schulz_bf16_uses_it_and_agrees_with_the_pure_path(fn, monkeypatch):
    used = _spy(monkeypatch)
    g = mx.random.normal((96, 64), key=mx.random.key(12))  # tall: the iteration runs on the transpose
    one = fn(g, 1, dtype=bf16)
    five = fn(g, 5, dtype=bf16)
    assert used == [True, True]
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "0")
    one_pure = fn(g, 1, dtype=bf16)
    five_pure = fn(g, 5, dtype=bf16)
    assert used == [True, True, False, False]
    assert one.dtype == bf16 and one.shape == g.shape
    # one step: three roundings, each at most one ulp from the pure path's
    assert ulps(one, one_pure) <= 2
    # five steps amplify those differences (the iteration is not contractive entrywise): close, not equal
    assert mx.max(mx.abs(five.astype(f32) - five_pure.astype(f32))).item() < 2e-2


def test_float32_iteration_and_disabled_switch_do_not_use_it(monkeypatch):
    used = _spy(monkeypatch)
    g = mx.random.normal((32, 48), key=mx.random.key(13))
    matrix.newton_schulz(g, 2, dtype=f32)
    assert used == []  # not asked: only bfloat16 iterations
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "0")
    assert not native.bf16_available()
    matrix.newton_schulz(g, 2, dtype=bf16)
    assert used == [False]


def test_muon_bf16_step_close_to_the_pure_path(monkeypatch):
    from mlx_optim import Muon

    used = _spy(monkeypatch)
    w = mx.random.normal((64, 96), key=mx.random.key(14))
    grad = mx.random.normal((64, 96), key=mx.random.key(15))
    outs = []
    for flag in ("1", "0"):
        monkeypatch.setenv("MLX_OPTIM_NATIVE", flag)
        outs.append(Muon(learning_rate=0.02, ns_dtype="bfloat16").apply_gradients({"w": grad}, {"w": w})["w"])
    assert used == [True, False]
    moved = mx.max(mx.abs(outs[1] - w)).item()
    assert moved > 1e-3
    assert mx.max(mx.abs(outs[0] - outs[1])).item() < 0.05 * moved


@pytest.mark.skipif(not HAS_AMX, reason="no AMX here")
@pytest.mark.parametrize("shape", [(700, 300), (1024, 2048), (2048, 2048)])
def test_amx_loop_is_the_mkl_loop_at_real_size(shape):
    """The two engines at the sizes Muon meets (the AMX products stream their B panels past row groups held in L2;
    MKL blocks its own way), and on a tall matrix (the callers pass the wide orientation; the task takes either):
    the same five steps, equal but for entries where a float32 sum rounds the other way."""
    g = mx.random.normal(shape, key=mx.random.key(26))
    schedule = matrix.NS_COEFFICIENTS["quintic"]
    one = [native.bf16_newton_schulz(g, schedule[:1], 1e-7, amx=amx) for amx in (True, False)]
    assert ulps(*one) <= 2 and mx.mean((one[0] == one[1]).astype(f32)).item() > 0.999
    five = [native.bf16_newton_schulz(g, schedule, 1e-7, amx=amx) for amx in (True, False)]
    assert mx.max(mx.abs(five[0].astype(f32) - five[1].astype(f32))).item() < 2e-2


def test_amx_default_and_switch(monkeypatch):
    """AMX is the default engine exactly where amx_available() says so, except for thin matrices (MKL's loop was
    faster there); MLX_OPTIM_AMX=0 turns it off (for the default: amx=True still asks for it where the processor
    has it)."""
    calls = []
    module = native.load()
    real = module.bf16_newton_schulz
    monkeypatch.setattr(module, "bf16_newton_schulz", lambda *a: calls.append(a[-1]) or real(*a))
    x = normalized(mx.random.normal((40, 72), key=mx.random.key(27)))
    mx.eval(native.bf16_newton_schulz(x, matrix.NS_COEFFICIENTS["quintic"][:1]))
    monkeypatch.setenv("MLX_OPTIM_AMX", "0")
    assert not native.amx_available()
    mx.eval(native.bf16_newton_schulz(x, matrix.NS_COEFFICIENTS["quintic"][:1]))
    assert calls == [HAS_AMX, False]
    monkeypatch.delenv("MLX_OPTIM_AMX")
    thin = normalized(mx.random.normal((32, 2048), key=mx.random.key(29)))  # thin: MKL's loop by default
    mx.eval(native.bf16_newton_schulz(thin, matrix.NS_COEFFICIENTS["quintic"][:1]))
    assert calls == [HAS_AMX, False, False]
    if not module.amx_available():
        with pytest.raises(ValueError, match="AMX is not available"):
            native.bf16_newton_schulz(x, matrix.NS_COEFFICIENTS["quintic"][:1], amx=True)


def test_spectralsphere_msign_runs_natively(monkeypatch):
    """SpectralSphere's msign (Polar Express schedule, its own normalization) iterates through the native loop for
    bfloat16 on the CPU, with the products and roundings of its MLX loop: one step within two ulps, five close."""
    from mlx_optim.optimizers.spectralsphere import msign

    used = _spy(monkeypatch)
    x = mx.random.normal((96, 200), key=mx.random.key(28))
    native_one, native_five = msign(x, 1, bf16), msign(x.T, 5, bf16)  # the tall one runs on its transpose
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "0")
    pure_one, pure_five = msign(x, 1, bf16), msign(x.T, 5, bf16)
    assert used == [True, True, False, False]
    assert native_one.dtype == f32 and native_five.shape == (200, 96)
    assert ulps(native_one, pure_one) <= 2
    assert mx.max(mx.abs(native_five - pure_five)).item() < 2e-2
