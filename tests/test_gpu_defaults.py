"""The CPU-only mechanisms stay off on a GPU device (the default device mocked as the GPU; a control run on the
CPU shows each one is on there, so the test can fail): the automatic fused update (``Optimizer.fuse_updates``),
the extra CPU update streams (``mlx_optim.streams``), the buffer-cache reservation and the JIT precompiled header
(``mlx_optim.jit_pch``, never built implicitly on any device)."""

from __future__ import annotations

import mlx.core as mx
import pytest

import mlx_optim as mo
from mlx_optim import jit_pch, streams
from mlx_optim.base import Optimizer

DEVICES = ["cpu", "gpu"]


@pytest.fixture
def device(request, monkeypatch):
    """Mock the default device (the arrays still live on the CPU: only mlx_optim's decisions are under test)."""
    monkeypatch.setattr(mx.metal, "is_available", lambda: False)
    monkeypatch.setattr(mx.cuda, "is_available", lambda: False)
    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(getattr(mx, request.param)))
    return request.param


def _tree():
    return {"w": mx.ones((128, 64)), "b": mx.zeros((64,))}


def _grads():
    return {"w": mx.full((128, 64), 0.1), "b": mx.full((64,), 0.1)}


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_automatic_fused_update_only_on_cpu(monkeypatch, device):
    monkeypatch.setattr(Optimizer, "fuse_updates", None)  # the default (tests pin it to False)
    opt = mo.AdamW(1e-3)
    params = _tree()
    opt.init(params)
    mx.eval(opt.apply_gradients(_grads(), params))
    assert opt._fuses_updates() is (device == "cpu")
    assert (opt.__dict__.get("_fused_fn") is not None) is (device == "cpu")


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_update_streams_only_on_cpu(monkeypatch, device):
    monkeypatch.setenv("MLX_OPTIM_STREAMS", "4")
    built = []
    original = streams.LeafStreams.__init__
    monkeypatch.setattr(streams.LeafStreams, "__init__", lambda self, n: built.append(n) or original(self, n))
    for n in (None, 2, 4):
        assert (streams.LeafStreams.for_step(n) is None) is (device == "gpu"), n
    built.clear()
    opt = mo.AdamW(1e-3)
    opt.update_streams = 4
    params = _tree()
    opt.init(params)
    mx.eval(opt.apply_gradients(_grads(), params))
    assert bool(built) is (device == "cpu")


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_buffer_cache_reservation_only_on_cpu(monkeypatch, device):
    monkeypatch.delenv("MLX_OPTIM_BUFFER_CACHE", raising=False)
    monkeypatch.setattr(streams, "_buffer_cache", True)
    limits = []
    monkeypatch.setattr(mx, "set_cache_limit", lambda n: limits.append(n) or 0)
    mo.Adam(1e-3).init(_tree())
    assert bool(limits) is (device == "cpu")
    assert streams.reserve_buffer_cache(2**30) is (device == "cpu")


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_jit_pch_is_never_built_implicitly(monkeypatch, device):
    def refuse(*args, **kwargs):
        raise AssertionError("jit_pch.build runs only from `mlx-optim jit-pch`")

    monkeypatch.setattr(jit_pch, "build", refuse)
    monkeypatch.setattr(Optimizer, "fuse_updates", None)
    opt = mo.Lion(1e-4)
    params = _tree()
    opt.init(params)
    step = mx.compile(opt.apply_gradients, inputs=[opt.state], outputs=[opt.state])
    mx.eval(step(_grads(), params), opt.apply_gradients(_grads(), params))
