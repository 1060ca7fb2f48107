"""The native int8 Adam step (mlx_optim.native) against the pure-MLX int8 path (mlx_optim.quantized).

Codes and scales must be equal bit for bit and parameters within one float32 ulp, step after step, for sizes that
are and are not multiples of the block, float32 and bfloat16 parameters, the three weight-decay modes, maximize,
compiled (the default on the CPU) and eager updates. The pure path is itself checked bit for bit against a NumPy
transcription of torchao's quantizer (tests/test_quantized.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlx_optim
from mlx_optim import native

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"w": (64, 256), "odd": (5000,), "cube": (3, 1000, 7), "small": (40, 50)}  # small: below min_size


@pytest.fixture(scope="module", autouse=True)
def _built():
    assert native.available(), f"the native extension did not build or load: {native._failed}"


def _params(dtype=mx.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {k: mx.array(rng.standard_normal(s).astype(np.float32)).astype(dtype) for k, s in SHAPES.items()}


def _grads(params, step):
    rng = np.random.default_rng(100 + step)
    # gradients spanning several decades, so blocks have very different scales
    return {
        k: mx.array((rng.standard_normal(p.shape) * 10.0 ** rng.integers(-6, 2, p.shape)).astype(np.float32)).astype(
            p.dtype
        )
        for k, p in params.items()
    }


def _run(make, steps, dtype, native_on, monkeypatch, fuse=None):
    monkeypatch.setenv("MLX_OPTIM_NATIVE", "1" if native_on else "0")
    calls = []
    real = native.adam8

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(native, "adam8", counting)
    opt = make()
    if fuse is not None:
        opt.fuse_updates = fuse
    params = _params(dtype)
    for t in range(steps):
        params = opt.apply_gradients(_grads(params, t), params)
        mx.eval(params, opt.state)
    monkeypatch.setattr(native, "adam8", real)
    return params, opt.state, len(calls)


def _ulps(a: mx.array, b: mx.array) -> int:
    x = np.array(a.astype(mx.float32)).view(np.int32).astype(np.int64)
    y = np.array(b.astype(mx.float32)).view(np.int32).astype(np.int64)
    return int(np.abs(x - y).max())


def _compare(fast, pure, dtype):
    (p_fast, s_fast, n_fast), (p_pure, s_pure, n_pure) = fast, pure
    assert n_fast > 0 and n_pure == 0  # the fast path ran, and only where enabled
    for k in SHAPES:
        assert p_fast[k].dtype == dtype
        assert _ulps(p_fast[k], p_pure[k]) <= (1 if dtype == mx.float32 else 0), k
        for name in ("exp_avg", "exp_avg_sq"):
            a, b = s_fast[k][name], s_pure[k][name]
            if k == "small":
                assert isinstance(a, mx.array) and mx.array_equal(a, b)
                continue
            assert np.array_equal(np.array(a["codes"]), np.array(b["codes"])), (k, name)
            assert np.array_equal(np.array(a["scale"]).view(np.int32), np.array(b["scale"]).view(np.int32)), (k, name)


CONFIGS = {
    "adamw": lambda: mlx_optim.AdamW(learning_rate=1e-2, weight_decay=0.1, state_dtype="int8"),
    "adam_l2": lambda: mlx_optim.Adam(learning_rate=1e-3, weight_decay=0.01, state_dtype="int8"),
    "adam_plain_maximize": lambda: mlx_optim.Adam(learning_rate=3e-3, maximize=True, state_dtype="int8"),
    "adamw_block64": lambda: mlx_optim.AdamW(
        learning_rate=1e-2, betas=(0.8, 0.95), state_dtype=mlx_optim.quantized.QuantizedState(8, block_size=64)
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_equals_pure_path_float32(name, monkeypatch):
    make = CONFIGS[name]
    fast = _run(make, 6, mx.float32, True, monkeypatch)
    pure = _run(make, 6, mx.float32, False, monkeypatch)
    _compare(fast, pure, mx.float32)


@pytest.mark.parametrize("fuse", [True, False])
def test_equals_pure_path_bfloat16(fuse, monkeypatch):
    make = CONFIGS["adamw"]
    fast = _run(make, 5, mx.bfloat16, True, monkeypatch, fuse)
    pure = _run(make, 5, mx.bfloat16, False, monkeypatch, fuse)
    _compare(fast, pure, mx.bfloat16)


def test_eager_equals_compiled(monkeypatch):
    make = CONFIGS["adamw"]
    eager = _run(make, 4, mx.float32, True, monkeypatch, False)
    compiled = _run(make, 4, mx.float32, True, monkeypatch, True)
    _compare(eager, (*compiled[:2], 0), mx.float32)


def test_not_covered_configurations_use_the_pure_path(monkeypatch):
    for make in (
        lambda: mlx_optim.AdamW(learning_rate=1e-2, amsgrad=True, state_dtype="int8"),
        lambda: mlx_optim.AdamW(learning_rate=1e-2, state_dtype="int4"),
        lambda: mlx_optim.AdamW(
            learning_rate=1e-2, state_dtype=mlx_optim.quantized.QuantizedState(8, rounding="stochastic")
        ),
    ):
        assert _run(make, 2, mx.float32, True, monkeypatch)[2] == 0


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    def broken(force=False):
        raise RuntimeError("g++: not found")

    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_failed", None)
    monkeypatch.setattr(native, "build", broken)
    make = CONFIGS["adamw"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, state, calls = _run(make, 3, mx.float32, True, monkeypatch)
    assert calls == 0
    assert [str(w.message).count("g++: not found") for w in caught] == [1]
    pure = _run(make, 3, mx.float32, False, monkeypatch)
    for k in SHAPES:
        assert mx.array_equal(params[k], pure[0][k])


def test_loads_from_the_cache_in_a_fresh_process():
    code = (
        "import mlx.core as mx, mlx_optim\n"
        "from mlx_optim import native\n"
        "opt = mlx_optim.AdamW(learning_rate=1e-2, state_dtype='int8')\n"
        "p = {'w': mx.ones((300, 30))}\n"
        "for _ in range(2):\n"
        "    p = opt.apply_gradients({'w': mx.full((300, 30), 0.5)}, p)\n"
        "mx.eval(p)\n"
        "assert native._module is not None\n"
        "print(float(p['w'][0, 0]))\n"
    )
    env = {**os.environ, "MLX_OPTIM_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # AdamW with a constant gradient: each step moves by lr (up to eps), after the decay p * (1 - lr wd)
    expected = 1.0
    for _ in range(2):
        expected = expected * (1 - 1e-2 * 1e-2) - 1e-2
    assert abs(float(out.stdout.strip()) - expected) < 1e-5


def test_views_are_read_as_dense_arrays():
    # a transposed parameter, a broadcast gradient and a sliced scale give the same step as their dense copies
    fmt = mlx_optim.quantized.QuantizedState(8)
    rng = np.random.default_rng(3)
    base = mx.array(rng.standard_normal((300, 40)).astype(np.float32))
    p = base.T  # (40, 300), not row-contiguous
    g = mx.broadcast_to(mx.array(rng.standard_normal((1, 300)).astype(np.float32)), (40, 300))
    m = fmt.quantize(mx.array(rng.standard_normal((40, 300)).astype(np.float32)) * 1e-2, False)
    v = fmt.quantize(mx.array(rng.random((40, 300)).astype(np.float32)) * 1e-4, True)
    wide = mx.concatenate([v["scale"][:, None], mx.zeros_like(v["scale"])[:, None]], axis=1)
    scalars = mx.array([9.0, 0.1, 999.0, 0.001, 1e-8, 0.999, 1e-3, 1.0 / (1 - 0.999) ** 0.5])
    args = dict(wd_mode=2, block=256, scale_floor=fmt.scale_floor)
    views = native.adam8(p, g, m["codes"], m["scale"], v["codes"], wide[:, 0], scalars, **args)
    dense = [mx.array(np.array(x)) for x in (p, g, wide[:, 0])]
    copies = native.adam8(dense[0], dense[1], m["codes"], m["scale"], v["codes"], dense[2], scalars, **args)
    for a, b in zip(views, copies):
        assert a.shape == b.shape and np.array_equal(np.array(a), np.array(b))
