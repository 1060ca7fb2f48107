"""A stand-in for ``mx.fast.metal_kernel`` / ``cuda_kernel`` whose kernels compute ``mlx_optim.kernels.reference``
(optionally wrong, or raising), for tests that take the GPU kernel path on the CPU."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim import kernels


class FakeKernels:
    """``mode``: ``"good"`` (the pure math), ``"wrong"`` (the parameter off by 1%), ``"raise"`` (a RuntimeError at
    launch). ``bad_dtypes``: only parameters of these dtypes get the bad behaviour (default: all). ``calls`` records
    every launch (update name, parameter dtype, size)."""

    def __init__(self, mode: str = "good", bad_dtypes: tuple = ()):
        self.mode, self.bad_dtypes = mode, bad_dtypes
        self.built: list[str] = []
        self.calls: list[tuple] = []

    def __call__(self, name, input_names, output_names, source, header="", **kw):
        self.built.append(name)
        (u,) = [u for u in kernels.UPDATES if name.startswith(f"mlx_optim_{u.name}_")]
        return lambda **call: self._run(u, call)

    def _run(self, u: kernels.Update, call: dict):
        template = dict(call["template"])
        flags = {f: template[f] for f in u.flags}
        names = u.active(flags)
        ins = call["inputs"]
        p, g = ins[0], ins[1]
        states = dict(zip(names, ins[2 : 2 + len(names)]))
        scalars = dict(zip(u.scalars, ins[2 + len(names) :]))
        self.calls.append((u.name, p.dtype, p.size))
        dtypes = {p.dtype, *(a.dtype for a in states.values())}
        bad = self.mode != "good" and (not self.bad_dtypes or bool(dtypes & set(self.bad_dtypes)))
        if bad and self.mode == "raise":
            raise RuntimeError("simulated kernel failure (Metal compile error)")
        new_p, new_states = kernels.reference(u, p, g, states, scalars, flags)
        if bad:
            new_p = (new_p.astype(mx.float32) * 1.01 + 0.01).astype(new_p.dtype)
        outs = [new_p, *(new_states[s] for s in names)]
        return [o.astype(dt).reshape(shape) for o, dt, shape in zip(outs, call["output_dtypes"], call["output_shapes"])]


def mock_gpu(monkeypatch, fake: FakeKernels | None, where: str = "metal") -> None:
    """Make ``mlx_optim.kernels`` see a ``where`` backend on the GPU device, building its kernels with ``fake``."""
    monkeypatch.setattr(mx.metal, "is_available", lambda: where == "metal")
    monkeypatch.setattr(mx.cuda, "is_available", lambda: where == "cuda")
    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(mx.gpu))
    monkeypatch.setattr(mx.fast, "metal_kernel", fake)
    monkeypatch.setattr(mx.fast, "cuda_kernel", fake)
    monkeypatch.setattr(kernels, "self_check", True)
    kernels.clear_cache()
