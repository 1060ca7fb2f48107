"""Parity rows for :mod:`mlx_optim.optimizers.adago`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.muon import ADAMW_OPTS, NS_NOTE, muon_ref, not_c, ns_float32, reference_ns_dtype

ADAGO = muon_ref(pytorch_optimizer.AdaGO, group_keys=("ns_method", "ns_reset_steps"))


ROWS = [
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
]

# the rows above compare with the reference's low-precision iteration (our CPU default is float32)
ROWS = [reference_ns_dtype(r) for r in ROWS] + [
    # float32 iteration on both sides (the reference's helpers with their dtype=torch.float32)
    Row("adago", {"learning_rate": 5e-2, "ns_dtype": "float32"}, ref=ns_float32(ADAGO), id="ns-f32"),
]
