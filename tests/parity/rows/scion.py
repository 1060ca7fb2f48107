"""Parity rows for :mod:`mlx_optim.optimizers.scion`."""

from __future__ import annotations

import pytorch_optimizer
import torch

from mlx_optim.optimizers.scion import LMONorm
from tests.parity.harness import Row
from tests.parity.runners.muon import NS_NOTE, _as_mx, _named, ns_float32, reference_ns_dtype


def scion_ref(cls):
    """Factory: ``cls`` with one group per LMO choice when ``norm_type`` is a callable (ours: per leaf)."""

    def factory(params, norm_type=LMONorm.AUTO, norm_kwargs=None, **kw):
        if not callable(norm_type):
            return cls(params, norm_type=norm_type, norm_kwargs=norm_kwargs, **kw)
        groups = {}
        for n, p in _named(params):
            choice = norm_type(n, _as_mx(p))
            t, opts = choice if isinstance(choice, tuple) else (choice, norm_kwargs or {})
            key = (int(t), tuple(sorted(opts.items())))
            groups.setdefault(key, {"params": [], "norm_type": int(t), "norm_kwargs": dict(opts)})["params"].append(p)
        return cls(list(groups.values()), **kw)

    return factory


class SCIONLightAccumulating:
    """pytorch_optimizer.SCIONLight used as documented: ``p.grad`` is never zeroed, backward adds to it.

    The harness assigns a fresh ``p.grad`` each step; this wrapper adds it to the buffer
    the previous step left (already scaled by ``1 - momentum``). With ``maximize`` it
    negates only the new gradient and runs the reference with ``maximize=False``: the
    reference's in-place negation of the whole accumulated buffer flips the history's
    sign every step, which our state-based port deliberately does not reproduce.
    """

    def __init__(self, params, maximize=False, **kw):
        self.params = list(params)
        self.sign = -1.0 if maximize else 1.0
        self.buffers = [torch.zeros_like(p) for p in self.params]
        self.opt = scion_ref(pytorch_optimizer.SCIONLight)(self.params, **kw)

    def step(self, closure=None):
        for p, b in zip(self.params, self.buffers):
            p.grad = b + self.sign * p.grad
        self.opt.step()
        self.buffers = [p.grad for p in self.params]


def scion_mixed(path, p):
    return {
        "a": LMONorm.BIAS,
        "b": (LMONorm.SIGN, {"normalize": False}),
        "c": (LMONorm.SPECTRAL, {"max_scale": True, "normalize": False, "num_steps": 4}),
    }[path]


def scion_rowcol(path, p):
    return {
        "a": LMONorm.NONE,
        "b": (LMONorm.COL, {"normalized": True, "transpose": True}),
        "c": (LMONorm.SPECTRALCONV, {"num_steps": 3}),
    }[path]


def scion_row(path, p):
    return {"a": LMONorm.BIAS, "b": (LMONorm.ROW, {"normalized": False}), "c": LMONorm.NONE}[path]


SCION_REF = scion_ref(pytorch_optimizer.SCION)


ROWS = [
    # scion: AUTO = RMS for a, spectral for b, spectral-conv for c
    Row("scion", {"learning_rate": 1e-2}, ref=SCION_REF, atol=1e-4, note=NS_NOTE),  # measured 1.9e-5,
    Row(
        "scion",
        {"learning_rate": 1e-2, "momentum": 0.5, "constraint": True, "scale": 2.0, "maximize": True},
        ref=SCION_REF,
        id="constraint-max",
    ),
    Row(
        "scion",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "norm_type": scion_mixed},
        ref=SCION_REF,
        id="l2-sign-spectral",
    ),
    Row(
        "scion",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "momentum": 1.0, "norm_type": scion_rowcol},
        ref=SCION_REF,
        id="col-conv",
    ),
    Row(
        "scion",
        {"learning_rate": 1e-2, "norm_type": scion_row},
        ref=SCION_REF,
        ref_kwargs={"foreach": False},  # the reference's per-parameter path
        id="row-per-param",
    ),
    Row("scion", {"learning_rate": 1e-2, "norm_type": LMONorm.NONE, "weight_decay": 0.1}, ref=SCION_REF, id="none"),
    # scionlight: momentum lives in the (never zeroed) gradient buffer
    Row("scionlight", {"learning_rate": 1e-2}, ref=SCIONLightAccumulating),
    Row(
        "scionlight",
        {"learning_rate": 1e-2, "momentum": 0.5, "constraint": True, "scale": 2.0, "maximize": True},
        ref=SCIONLightAccumulating,
        id="constraint-max",
    ),
    Row(
        "scionlight",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "norm_type": scion_mixed},
        ref=SCIONLightAccumulating,
        id="l2-sign-spectral",
    ),
    Row(
        "scionlight",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "norm_type": scion_row},
        ref=SCIONLightAccumulating,
        ref_kwargs={"foreach": False},
        id="row-per-param",
    ),
]

# the rows above compare with the reference's low-precision iteration (our CPU default is float32)
ROWS = [reference_ns_dtype(r) for r in ROWS] + [
    # float32 iteration on both sides (the reference's helpers with their dtype=torch.float32)
    Row("scion", {"learning_rate": 1e-2, "ns_dtype": "float32"}, ref=ns_float32(SCION_REF), id="ns-f32"),
    Row(
        "scionlight",
        {"learning_rate": 1e-2, "ns_dtype": "float32"},
        ref=ns_float32(SCIONLightAccumulating),
        id="ns-f32",
    ),
]
