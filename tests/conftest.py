"""Shared fixtures. The references (torch, pytorch_optimizer) are required: a missing one is an error, not a skip."""

import os

import pytest
import pytorch_optimizer  # noqa: F401
import torch  # noqa: F401  (fail loudly if the pinned reference is missing)

# MLX runs on an optimized BLAS/LAPACK when there is one (mlx_optim.blas; MLX_OPTIM_BLAS=off keeps the bundled one).
# torch is imported first, so its own LAPACK calls stay bound to its own MKL: the parity references do not change.
os.environ.setdefault("MLX_OPTIM_BLAS", "auto")

from mlx_optim.base import Optimizer  # noqa: E402


@pytest.fixture(autouse=True)
def plain_updates(request, monkeypatch):
    """Tests run the plain update (the path the parity rows hold against PyTorch), not the automatic CPU fused
    update: one compile per optimizer configuration would multiply the kernels MLX builds with g++ on a cold
    machine. tests/test_fast_paths.py switches it back on and asserts fused == plain bit for bit for every
    registered optimizer; subprocess tests (examples, distributed, CLI) run the defaults."""
    if request.module.__name__.endswith("test_fast_paths"):
        return
    monkeypatch.setattr(Optimizer, "fuse_updates", False)
