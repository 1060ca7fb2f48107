"""Parity rows for the orthogonalized / LMO optimizers (mlx_optim/optimizers/muon.py).

pytorch_optimizer's Muon family takes parameter groups flagged ``use_muon``; ours
splits one tree with ``muon_filter(path, parameter)``. The reference factories below
build the torch groups from the same split, naming the harness parameters by
``SHAPES``'s keys (the order the harness passes them in).
"""

import os
import tempfile

import mlx.core as mx
import pytorch_optimizer
import torch

from mlx_optim.optimizers.muon import LMONorm, default_muon_filter
from tests.parity.harness import SHAPES, Row


def _named(params):
    params = list(params)
    assert len(params) == len(SHAPES), "the harness passes one tensor per SHAPES entry"
    return list(zip(SHAPES, params))


def _as_mx(p: torch.Tensor) -> mx.array:
    return mx.array(p.detach().numpy())


def muon_ref(cls, setup=None, group_keys=()):
    """Factory: ``cls`` with ``use_muon`` groups from ``muon_filter`` (ours), the other keywords as given.

    ``group_keys``: keywords the reference reads only from the parameter groups (its constructor drops them).
    """

    def factory(params, muon_filter=None, **kw):
        if setup is not None:
            setup()
        keep = muon_filter or default_muon_filter
        named = _named(params)
        muon = [p for n, p in named if keep(n, _as_mx(p))]
        adam = [p for n, p in named if not keep(n, _as_mx(p))]
        extra = {k: kw.pop(k) for k in group_keys if k in kw}
        groups = [{"params": ps, "use_muon": flag, **extra} for ps, flag in ((muon, True), (adam, False)) if ps]
        return cls(groups, **kw)

    return factory


def _single_process_group():
    """DistributedMuon needs torch.distributed; a one-process gloo group makes world size 1."""
    if not torch.distributed.is_initialized():
        store = torch.distributed.FileStore(os.path.join(tempfile.mkdtemp(), "store"), 1)
        torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)


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


def not_c(path, p):
    """Routes the 1-D ``a`` and the matrix ``b`` to the orthogonalized branch, the 3-D ``c`` to AdamW."""
    return path != "c"


def only_c(path, p):
    return path == "c"


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


MUON = muon_ref(pytorch_optimizer.Muon)
DMUON = muon_ref(pytorch_optimizer.DistributedMuon, setup=_single_process_group)
ADAMUON = muon_ref(pytorch_optimizer.AdaMuon, group_keys=("ns_method", "ns_reset_steps"))
ADAGO = muon_ref(pytorch_optimizer.AdaGO, group_keys=("ns_method", "ns_reset_steps"))
SCION_REF = scion_ref(pytorch_optimizer.SCION)

# Why some rows need a looser atol (measured, see each row). torch's CPU bfloat16 mm/addmm accumulates
# more accurately than an MLX float32 matmul (on the traced inputs its results equal a float64
# evaluation rounded to bfloat16; ours differ in the float32 summation), so a Newton-Schulz iterate
# entry now and then rounds to the neighbouring bfloat16 value. The iteration amplifies such a flip
# (slope up to a = 3.4445 at small singular values), so the update differs by a few bfloat16 ulps
# (lr * 2^-7 per unit entry) at the steps where it happens; the rows without such an event agree to
# float32 rounding. Bugs in the math (shape factor, nesterov, decay, routing) move parameters by
# about lr * |update| ~ 1e-2 per step.
NS_NOTE = "bf16 Newton-Schulz: rare 1-ulp rounding flips from float32 summation order, amplified by the iteration"

ADAMW_OPTS = {"adamw_lr": 1e-2, "adamw_betas": (0.8, 0.9), "adamw_wd": 0.1}

ROWS = [
    # muon: defaults route b (5, 6) and c (2, 3, 4) to Muon, a (7,) to AdamW
    Row("muon", {"learning_rate": 2e-2}, ref=MUON, atol=1e-3, note=NS_NOTE),  # measured 5.5e-4
    Row(
        "muon",
        {
            "learning_rate": 2e-2,
            "weight_decay": 0.1,
            "nesterov": False,
            "use_adjusted_lr": True,
            **ADAMW_OPTS,
            "adamw_eps": 1e-8,
            "maximize": True,
            "cautious": True,
        },
        ref=MUON,
        id="options",
    ),
    Row(
        "muon",
        {
            "learning_rate": 2e-2,
            "momentum": 0.9,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adamw_wd": 0.1,
            "ns_coeffs": "quintic",
            "ns_steps": 6,
            "muon_filter": not_c,
        },
        ref=MUON,
        id="l2-filter-quintic",
    ),
    Row(
        "muon",
        {"learning_rate": 2e-2, "cautious": True, "ns_coeffs": "polar_express", "muon_filter": only_c},
        ref=MUON,
        ref_kwargs={"foreach": False},  # the reference's per-parameter path
        id="per-param-polar",
    ),
    Row(
        "muon",
        {"learning_rate": 2e-2, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3), "ns_steps": 5},
        ref=MUON,
        id="gram",
    ),
    # distributedmuon: world size 1 (one-process gloo group on the reference side)
    Row("distributedmuon", {"learning_rate": 2e-2}, ref=DMUON, atol=1e-3, note=NS_NOTE),  # measured 5.5e-4
    Row(
        "distributedmuon",
        {
            "learning_rate": 2e-2,
            "weight_decay": 0.1,
            "nesterov": False,
            "use_adjusted_lr": True,
            **ADAMW_OPTS,
            "maximize": True,
            "cautious": True,
            "muon_filter": not_c,
        },
        ref=DMUON,
        id="options",
    ),
    # adamuon (reference default foreach=False: its per-parameter path)
    Row("adamuon", {"learning_rate": 2e-2}, ref=ADAMUON),
    Row(
        "adamuon",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.1,
            "use_adjusted_lr": False,
            **ADAMW_OPTS,
            "eps": 1e-8,
            "maximize": True,
            "ns_coeffs": "polar_express_safer",
        },
        ref=ADAMUON,
        id="options",
    ),
    Row(
        "adamuon",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "ns_steps": 3, "muon_filter": only_c},
        ref=ADAMUON,
        id="l2-filter",
    ),
    Row(
        "adamuon",
        {"learning_rate": 2e-2, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3)},
        ref=ADAMUON,
        ref_kwargs={"foreach": True},  # its per-parameter path ignores ns_method; the foreach path reads it
        atol=1e-4,  # measured 5.0e-5
        note="the reference's foreach path (the one that reads ns_method) rounds its bfloat16 update differently "
        "from the per-parameter path this port follows (its default row on the foreach path: 1.9e-4 apart)",
        id="gram",
    ),
    # adago
    Row("adago", {"learning_rate": 5e-2}, ref=ADAGO),
    Row(
        "adago",
        {
            "learning_rate": 5e-2,
            "momentum": 0.9,
            "nesterov": True,
            "cautious": True,
            "weight_decay": 0.1,
            "gamma": 2.0,
            "eps": 1e-4,
            "v": 1e-2,
            "use_adjusted_lr": True,
            **ADAMW_OPTS,
            "adamw_eps": 1e-8,
            "maximize": True,
        },
        ref=ADAGO,
        atol=1e-4,  # measured 1.6e-5
        note=NS_NOTE,
        id="options",
    ),
    Row(
        "adago",
        {
            "learning_rate": 5e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adamw_wd": 0.1,
            "ns_coeffs": "quintic",
            "muon_filter": not_c,
        },
        ref=ADAGO,
        id="l2-filter",
    ),
    Row(
        "adago",
        {"learning_rate": 0.2, "nesterov": True, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3)},
        ref=ADAGO,
        id="gram",
    ),
    # scion: AUTO = RMS for a, spectral for b, spectral-conv for c
    Row("scion", {"learning_rate": 1e-2}, ref=SCION_REF, atol=1e-4, note=NS_NOTE),  # measured 1.9e-5
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
