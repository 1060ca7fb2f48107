"""Parity rows for :mod:`mlx_optim.optimizers.spectralsphere`."""

from __future__ import annotations

from unittest import mock

import pytorch_optimizer
import torch
from pytorch_optimizer.optimizer import sso

from mlx_optim.check.fns import matrices, matrices_t
from tests.parity.harness import Row
from tests.parity.runners.muon import _as_mx, _named, reference_ns_dtype


def spectralsphere_ref(params, spectral_filter=None, **kw):
    """The reference gets only the leaves ``spectral_filter`` selects (ours leaves the others unchanged)."""
    keep = [p for n, p in _named(params) if spectral_filter is None or spectral_filter(n, _as_mx(p))]
    return pytorch_optimizer.SpectralSphere(keep, **kw)


class _TorchWithFloat32Bfloat16:
    """``torch`` as sso.py sees it, with ``torch.bfloat16`` meaning float32 (its iterations have no dtype keyword)."""

    bfloat16 = torch.float32

    def __getattr__(self, name):
        return getattr(torch, name)


def spectralsphere_f32_ref(params, **kw):
    """The reference with its power iteration and Newton–Schulz iterations in float32 instead of bfloat16."""
    opt = spectralsphere_ref(params, **kw)
    step = opt.step

    def step_f32(*args, **kwargs):
        with mock.patch.object(sso, "torch", _TorchWithFloat32Bfloat16()):
            return step(*args, **kwargs)

    opt.step = step_f32
    return opt


ROWS = [
    # spectralsphere: we port the reference's batched solver (solve_lambda_foreach; its path with foreach=True,
    # the default on CUDA). Its default CPU path bisects in float64 Python floats; the multiplier's residual f is
    # a bfloat16 value that is not monotone at that scale, so float64 and float32 midpoints can end on different
    # multipliers: the reference's own two paths differ by 9.6e-4 on the default row (ours vs batched: 4.5e-8).
    Row(
        "spectralsphere",
        {"learning_rate": 1e-2, "spectral_filter": matrices},
        ref=spectralsphere_ref,
        ref_kwargs={"foreach": True},
    ),
    Row(
        "spectralsphere",
        {
            "learning_rate": 1e-2,
            "momentum": 0.8,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "nesterov": False,
            "power_iteration_steps": 4,
            "msign_steps": 8,
            "solver_tolerance_f": 1e-3,
            "solver_max_iterations": 30,
            "maximize": True,
            "spectral_filter": matrices_t,
        },
        ref=spectralsphere_ref,
        ref_kwargs={"foreach": True},
        id="options",
    ),
    Row(
        "spectralsphere",
        {"learning_rate": 1e-2, "spectral_filter": matrices},
        ref=spectralsphere_ref,
        atol=2e-3,  # measured 9.6e-4, equal to the reference's per-parameter vs batched difference
        note="reference default CPU path bisects in float64; on bf16-noisy residuals it can pick another multiplier",
        id="per-param-solver",
    ),
]
# The reference iterates in bfloat16; so do these rows (our CPU default is float32 where the native bfloat16 loop is
# not there; where it is, msign runs on it), and one row in float32 against the reference patched to float32.
ROWS = [reference_ns_dtype(r) for r in ROWS] + [
    Row(
        "spectralsphere",
        {"learning_rate": 1e-2, "spectral_filter": matrices, "ns_dtype": "float32"},
        ref=spectralsphere_f32_ref,
        ref_kwargs={"foreach": True},
        id="ns-f32",
    ),
]
