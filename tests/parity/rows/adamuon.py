"""Parity rows for :mod:`mlx_optim.optimizers.adamuon`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.muon import ADAMW_OPTS, muon_ref, ns_float32, only_c, reference_ns_dtype

ADAMUON = muon_ref(pytorch_optimizer.AdaMuon, group_keys=("ns_method", "ns_reset_steps"))


ROWS = [
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
]

# the rows above compare with the reference's low-precision iteration (our CPU default is float32)
ROWS = [reference_ns_dtype(r) for r in ROWS] + [
    # float32 iteration on both sides (the reference's helpers with their dtype=torch.float32)
    Row("adamuon", {"learning_rate": 2e-2, "ns_dtype": "float32"}, ref=ns_float32(ADAMUON), id="ns-f32"),
]
