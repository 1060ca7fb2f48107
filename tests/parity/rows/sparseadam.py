"""Parity rows for :mod:`mlx_optim.optimizers.sparseadam`."""

from __future__ import annotations

import numpy as np
import torch

from tests.parity import harness
from tests.parity.harness import Row


# ---------------------------------------------------------------------------- sparseadam
class SparseAdamRef:
    """``torch.optim.SparseAdam`` stepping on the sparse version of each dense ``p.grad``."""

    def __init__(self, params, **kw):
        self.params = list(params)
        self.opt = torch.optim.SparseAdam(self.params, **kw)

    def step(self, closure=None):
        for p in self.params:
            p.grad = p.grad.to_sparse()
        self.opt.step()


def _zero_some(grads: dict, t: int) -> dict:
    """Set some entries (``a``), rows (``b``) and fibres (``c``) of the step-``t`` gradient to exactly zero."""
    out = {k: g.copy() for k, g in grads.items()}
    out["a"][[i for i in range(7) if (i + t) % 3 == 0]] = 0.0
    out["b"][[i for i in range(5) if (i + t) % 2 == 0]] = 0.0
    for i in range(2):
        for j in range(3):
            if (i + j + t) % 3 == 0:
                out["c"][i, j] = 0.0
    return out


def sparse_runner(row: Row, compiled: bool):
    """Run both sides on gradients with exact zeros (the harness's gradient, some rows zeroed)."""
    original = harness.loss_and_grads

    def masked(params, t):
        loss, grads = original(params, t)
        return loss, _zero_some(grads, t)

    harness.loss_and_grads = masked
    try:
        mine, ref = harness.run_mlx(row, compiled), harness.run_reference(row)
    finally:
        harness.loss_and_grads = original
    # the check is meaningful only if some entries really stayed untouched on some step
    assert any(np.any(a["b"] == b["b"]) for a, b in zip(mine, mine[1:], strict=False))
    return mine, ref


ROWS = [
    # sparseadam: torch.optim.SparseAdam on p.grad.to_sparse(), gradients with exact zeros on both sides
    Row("sparseadam", {"learning_rate": 1e-2}, ref=SparseAdamRef, runner=sparse_runner),
    Row(
        "sparseadam",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "maximize": True},
        ref=SparseAdamRef,
        runner=sparse_runner,
        id="options-max",
    ),
]
