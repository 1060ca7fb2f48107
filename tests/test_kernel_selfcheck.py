"""Fused kernels that check themselves (``mlx_optim.kernels``), with the GPU backend mocked on the CPU.

The kernels are replaced by :class:`tests.fake_kernels.FakeKernels`, whose launches compute
``kernels.reference`` (the kernel body in pure ``mx`` math), a wrong result, or raise. Checked:

* ``kernels.reference`` is the optimizers' own math: three steps through the (good) fake kernel equal the pure
  path within 2 float32 ulps (as the g++-emulated kernels do in ``tests/test_kernels.py``);
* a kernel configuration is probed once per process before its first use; a wrong or raising kernel is disabled
  with exactly one ``RuntimeWarning`` naming it and asking for ``mlx-optim check``, and the update falls back to
  the pure math (identical results); the verdict is per configuration (a bf16-only failure keeps fp32 on the
  kernel);
* the probe's tolerance separates a real error (1%) from rounding (a one-ulp change passes).
"""

from __future__ import annotations

import warnings

import mlx.core as mx
import numpy as np
import pytest

from mlx_optim import kernels
from tests.fake_kernels import FakeKernels, mock_gpu
from tests.test_kernels import CONFIGS, assert_ulp, f32, inputs, run_steps


@pytest.fixture(autouse=True)
def fresh():
    kernels.clear_cache()
    yield
    kernels.clear_cache()


def _pure(name, dtype=mx.float32, **kw):
    p, grads, preset = inputs(name, "normal")
    saved = kernels.enabled
    kernels.enabled = False
    try:
        return run_steps(name, p, grads, preset, 5, param_dtype=dtype, **kw)
    finally:
        kernels.enabled = saved


def _through(fake, monkeypatch, name, dtype=mx.float32, **kw):
    mock_gpu(monkeypatch, fake)
    p, grads, preset = inputs(name, "normal")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = run_steps(name, p, grads, preset, 5, param_dtype=dtype, **kw)
    return got, [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_reference_is_the_optimizers_math(monkeypatch, name, dtype):
    want = _pure(name, dtype)
    fake = FakeKernels("good")
    got, caught = _through(fake, monkeypatch, name, dtype)
    assert not caught, [str(w.message) for w in caught]
    assert len(fake.calls) == 1 + 3, "one probe, then one launch per step"
    assert_ulp(f32(got[0]), f32(want[0]), f"{name} p")
    for k in want[1]:
        assert_ulp(f32(got[1][k]), f32(want[1][k]), f"{name} {k}")


@pytest.mark.parametrize("mode", ["wrong", "raise"])
@pytest.mark.parametrize("name", ["adamw-ams", "lion", "sgd-nesterov-l2"])
def test_failing_kernel_falls_back_with_one_warning(monkeypatch, mode, name):
    want = _pure(name)
    fake = FakeKernels(mode)
    got, caught = _through(fake, monkeypatch, name)
    assert len(caught) == 1, [str(w.message) for w in caught]
    msg = str(caught[0].message)
    u = CONFIGS[name][2]
    assert f"metal kernel {u.name}[" in msg and "mlx-optim check" in msg, msg
    assert ("simulated kernel failure" in msg) if mode == "raise" else ("differs from the pure mx math" in msg), msg
    assert len(fake.calls) == 1, "only the probe ran the kernel"
    assert np.array_equal(f32(got[0]), f32(want[0])), "the pure math ran"
    for k in want[1]:
        assert np.array_equal(f32(got[1][k]), f32(want[1][k])), k
    (reason,) = kernels.disabled().values()
    assert reason in msg
    # a second optimizer in the same process: no new probe, no new warning
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        p, grads, preset = inputs(name, "normal")
        run_steps(name, p, grads, preset, 5)
    assert not [w for w in again if issubclass(w.category, RuntimeWarning)] and len(fake.calls) == 1


def test_verdict_is_per_dtype_configuration(monkeypatch):
    """A kernel wrong only with a bf16 state: that configuration is disabled, the fp32 one keeps the kernel."""
    fake = FakeKernels("wrong", bad_dtypes=(mx.bfloat16,))
    want16 = _pure("adam", mx.bfloat16, state_dtype=mx.bfloat16)
    got16, caught16 = _through(fake, monkeypatch, "adam", mx.bfloat16, state_dtype=mx.bfloat16)
    assert len(caught16) == 1 and "state float32/float32/bfloat16 failed" in str(caught16[0].message)
    assert np.array_equal(f32(got16[0]), f32(want16[0])), "the pure math ran"
    with warnings.catch_warnings(record=True) as caught32:
        warnings.simplefilter("always")
        p, grads, preset = inputs("adam", "normal")
        run_steps("adam", p, grads, preset, 5)
    assert not caught32 and len(fake.calls) == 1 + 1 + 3, "fp32: its own probe passes, then the kernel runs"
    assert len(kernels.disabled()) == 1


def test_probe_tolerance_separates_rounding_from_errors():
    u, flags = kernels.ADAM, {"WD_MODE": 2, "AMSGRAD": True}
    for dtype in (mx.float32, mx.float16, mx.bfloat16):
        p, g, states, scalars = kernels.probe_inputs(u, flags, dtype, dtype, mx.float32)
        want = kernels.reference(u, p, g, states, scalars, flags)
        ulp_off = (mx.array(np.nextafter(np.array(want[0].astype(mx.float32)), np.inf)).astype(dtype), want[1])
        assert kernels.compare(u, ulp_off, want)[0] <= 1, "a one-ulp difference is rounding"
        wrong = ((want[0].astype(mx.float32) * 1.01 + 0.01).astype(dtype), want[1])
        assert kernels.compare(u, wrong, want)[0] > 1, "a 1% error is not"
        swapped = kernels.reference(u, p, g, states, {**scalars, "k1": scalars["c1"], "c1": scalars["k1"]}, flags)
        assert kernels.compare(u, swapped, want)[0] > 1, "swapped scalars are not"


def test_self_check_off_skips_the_probe(monkeypatch):
    fake = FakeKernels("wrong")
    mock_gpu(monkeypatch, fake)
    monkeypatch.setattr(kernels, "self_check", False)
    p, grads, preset = inputs("lion", "normal")
    run_steps("lion", p, grads, preset, 5)
    assert len(fake.calls) == 3 and not kernels.disabled()
