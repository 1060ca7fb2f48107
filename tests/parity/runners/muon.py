"""Parity rows for the orthogonalized / LMO optimizers (mlx_optim/optimizers/muon.py).

pytorch_optimizer's Muon family takes parameter groups flagged ``use_muon``; ours
splits one tree with ``muon_filter(path, parameter)``. The reference factories below
build the torch groups from the same split, naming the harness parameters by
``SHAPES``'s keys (the order the harness passes them in).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import tempfile

import mlx.core as mx
import torch

from mlx_optim.optimizers.muon import default_muon_filter
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


def not_c(path, p):
    """Routes the 1-D ``a`` and the matrix ``b`` to the orthogonalized branch, the 3-D ``c`` to AdamW."""
    return path != "c"


def only_c(path, p):
    return path == "c"


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


def _single_process_group():
    """DistributedMuon needs torch.distributed; a one-process gloo group makes world size 1."""
    if not torch.distributed.is_initialized():
        store = torch.distributed.FileStore(os.path.join(tempfile.mkdtemp(), "store"), 1)
        torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)


def reference_ns_dtype(row: Row) -> Row:
    """``row`` with our Newton–Schulz iteration in the reference's dtype (bfloat16; float16 for the Gram method).

    Our default on the CPU backend is float32, the references' is low precision.
    """
    if "ns_dtype" in row.kwargs:
        return row
    dtype = "float16" if row.kwargs.get("ns_method") == "gram_newton_schulz" else "bfloat16"
    return dataclasses.replace(row, kwargs={**row.kwargs, "ns_dtype": dtype})


@contextlib.contextmanager
def reference_ns_in(dtype: torch.dtype):
    """Run pytorch_optimizer's Newton–Schulz helpers with ``dtype=dtype`` (their own keyword; the optimizers do not
    forward one), by rebinding the names the optimizer modules imported."""
    from pytorch_optimizer.optimizer.utils import matrix

    originals = (matrix.zero_power_via_newton_schulz_5, matrix.zero_power_via_gram_newton_schulz)
    patched = []
    for name, mod in list(sys.modules.items()):
        if not name.startswith("pytorch_optimizer") or mod is None:
            continue
        for attr, value in list(vars(mod).items()):
            if any(value is f for f in originals):
                patched.append((mod, attr, value))
                setattr(mod, attr, functools.partial(value, dtype=dtype))
    try:
        yield
    finally:
        for mod, attr, value in patched:
            setattr(mod, attr, value)


def ns_float32(make):
    """Reference factory: ``make(params, **kw)`` whose steps run the Newton–Schulz iteration in float32."""

    def factory(params, **kw):
        opt = make(params, **kw)
        step = opt.step

        def step_f32(*args, **kwargs):
            with reference_ns_in(torch.float32):
                return step(*args, **kwargs)

        opt.step = step_f32
        return opt

    return factory
