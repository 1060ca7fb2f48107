"""Parity rows for :mod:`mlx_optim.optimizers.sparseadam`."""

from __future__ import annotations

import numpy as np
import torch

from mlx_optim.check import problems as check_problems
from tests.parity import harness
from tests.parity.harness import Portable, Row


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


def _sparse_reference(row: Row):
    """The reference on the harness's gradient with exact zeros (``mlx_optim.check.problems.zero_some``: some
    entries/rows/fibres, the "not looked up" ones), as the MLX side gets it (program problem ``sparse``)."""
    ref = harness.run_reference(row, check_problems.build({"sparse": True}, row.steps))
    assert any(np.any(a["b"] == b["b"]) for a, b in zip(ref, ref[1:], strict=False)), "no row was left untouched"
    return ref


sparse_runner = Portable("standard", _sparse_reference, {"problem": {"sparse": True}})


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
