"""The ``ns_dtype`` keyword of the Newton–Schulz optimizers: validation and the device-dependent default."""

from __future__ import annotations

import mlx.core as mx
import pytest

import mlx_optim
from mlx_optim.functional.matrix import ns_iteration_dtype

AVX512 = any(line.startswith("flags") and "avx512f" in line.split() for line in open("/proc/cpuinfo"))
NAMES = ["muon", "muonclip", "distributedmuon", "adamuon", "adago", "normuon", "scion", "scionlight", "spectralsphere"]


def test_default_on_the_cpu_is_bfloat16_when_native_else_float32_and_the_reference_dtype_on_a_gpu(monkeypatch):
    from mlx_optim import native

    with mx.stream(mx.cpu):
        assert mx.default_device().type == mx.cpu
        assert native.bf16_available(), native.bf16_unavailable_reason()  # CI installs the native extra
        # through MKL's bfloat16 GEMM where the processor has AVX-512 (read here from /proc/cpuinfo), else float32
        want = mx.bfloat16 if AVX512 else mx.float32
        assert ns_iteration_dtype(None, mx.bfloat16) == want
        assert ns_iteration_dtype("bfloat16", mx.bfloat16) == mx.bfloat16  # asked for: always
        assert ns_iteration_dtype(None, mx.bfloat16, native=False) == mx.float32  # MLX's matmul: no fast bf16
        assert ns_iteration_dtype(None, mx.float16) == mx.float32  # no native float16 loop
        monkeypatch.setenv("MLX_OPTIM_NATIVE", "0")
        assert ns_iteration_dtype(None, mx.bfloat16) == mx.float32
    assert ns_iteration_dtype("bfloat16", mx.float16) == mx.bfloat16
    assert ns_iteration_dtype(mx.float16, mx.bfloat16) == mx.float16
    if mx.metal.is_available():
        with mx.stream(mx.gpu):
            assert ns_iteration_dtype(None, mx.bfloat16) == mx.bfloat16


@pytest.mark.parametrize("name", NAMES)
def test_invalid_ns_dtype_is_rejected(name):
    with pytest.raises(ValueError, match="ns_dtype"):
        mlx_optim.load_optimizer(name)(ns_dtype="int8")
    with pytest.raises(ValueError, match="ns_dtype"):
        mlx_optim.load_optimizer(name)(ns_dtype=mx.int32)


@pytest.mark.parametrize("ns_dtype", [None, "bfloat16", mx.float32])
def test_muon_orthogonalizes_in_the_chosen_dtype(ns_dtype):
    opt = mlx_optim.Muon(ns_dtype=ns_dtype)
    o = opt.orthogonalize(mx.random.normal((8, 12), key=mx.random.key(0)))
    default = mx.bfloat16 if AVX512 or mx.default_device().type != mx.cpu else mx.float32
    expected = {None: default, "bfloat16": mx.bfloat16}.get(ns_dtype, ns_dtype)
    assert o.dtype == expected


def test_default_stays_float32_without_avx512(monkeypatch):
    """MKL's bfloat16 GEMM without AVX-512 (AVX2 code) made Muon's step slower than the float32 iteration."""
    from mlx_optim import native

    monkeypatch.setattr(native, "_has_avx512", lambda: False)
    with mx.stream(mx.cpu):
        assert not native.bf16_fast() and native.bf16_available()
        assert ns_iteration_dtype(None, mx.bfloat16) == mx.float32
        assert ns_iteration_dtype("bfloat16", mx.bfloat16) == mx.bfloat16
    monkeypatch.setattr(native, "_has_avx512", lambda: True)
    with mx.stream(mx.cpu):
        assert ns_iteration_dtype(None, mx.bfloat16) == mx.bfloat16
