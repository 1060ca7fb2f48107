"""Parity rows for :mod:`mlx_optim.optimizers.distributedmuon`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.muon import (
    ADAMW_OPTS,
    NS_NOTE,
    _single_process_group,
    muon_ref,
    not_c,
    ns_float32,
    reference_ns_dtype,
)

DMUON = muon_ref(pytorch_optimizer.DistributedMuon, setup=_single_process_group)


ROWS = [
    # distributedmuon: world size 1 (one-process gloo group on the reference side)
    Row("distributedmuon", {"learning_rate": 2e-2}, ref=DMUON, atol=1e-3, note=NS_NOTE),  # measured 5.5e-4,
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
]

# the rows above compare with the reference's low-precision iteration (our CPU default is float32)
ROWS = [reference_ns_dtype(r) for r in ROWS] + [
    # float32 iteration on both sides (the reference's helpers with their dtype=torch.float32)
    Row("distributedmuon", {"learning_rate": 2e-2, "ns_dtype": "float32"}, ref=ns_float32(DMUON), id="ns-f32"),
]
