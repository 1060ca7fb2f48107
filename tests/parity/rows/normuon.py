"""Parity rows for :mod:`mlx_optim.optimizers.normuon`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.muon import ADAMW_OPTS, NS_NOTE, muon_ref, not_c, ns_float32, only_c, reference_ns_dtype

NORMUON = muon_ref(pytorch_optimizer.NorMuon)


ROWS = [
    # normuon: reference default path (batched foreach); b and c orthogonalized, a on AdamW
    Row("normuon", {"learning_rate": 2e-2}, ref=NORMUON),
    Row(
        "normuon",
        {
            "learning_rate": 2e-2,
            "momentum": 0.9,
            "beta2": 0.8,
            "weight_decay": 0.1,
            "nesterov": False,
            "use_adjusted_lr": True,
            **ADAMW_OPTS,
            "adamw_eps": 1e-8,
            "eps": 1e-6,
            "maximize": True,
        },
        ref=NORMUON,
        id="options",
    ),
    Row(
        "normuon",
        {
            "learning_rate": 2e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adamw_wd": 0.1,
            "update_scale": "match_rms",
            "ns_coeffs": "quintic",
            "muon_filter": not_c,
        },
        ref=NORMUON,
        atol=1e-4,  # measured 1.8e-5: one bf16 Newton-Schulz flip at step 8 on identical inputs
        note=NS_NOTE,
        id="l2-rms-filter",
    ),
    Row(
        "normuon",
        {"learning_rate": 2e-2, "ns_coeffs": "polar_express", "muon_filter": only_c},
        ref=NORMUON,
        ref_kwargs={"foreach": False},  # the reference's per-parameter path
        id="per-param",
    ),
    Row(
        "normuon",
        {"learning_rate": 2e-2, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3)},
        ref=NORMUON,
        id="gram",
    ),
]

# the rows above compare with the reference's low-precision iteration (our CPU default is float32)
ROWS = [reference_ns_dtype(r) for r in ROWS] + [
    # float32 iteration on both sides (the reference's helpers with their dtype=torch.float32)
    Row("normuon", {"learning_rate": 2e-2, "ns_dtype": "float32"}, ref=ns_float32(NORMUON), id="ns-f32"),
]
