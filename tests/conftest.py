"""Shared fixtures. The references (torch, pytorch_optimizer) are required: a missing one is an error, not a skip."""

import pytest
import pytorch_optimizer  # noqa: F401
import torch  # noqa: F401  (fail loudly if the pinned reference is missing)

from mlx_optim.base import Optimizer


@pytest.fixture(autouse=True)
def plain_updates(request, monkeypatch):
    """Tests run the plain update (the path the parity rows hold against PyTorch), not the automatic CPU fused
    update: one compile per optimizer configuration would multiply the kernels MLX builds with g++ on a cold
    machine. tests/test_fast_paths.py switches it back on and asserts fused == plain bit for bit for every
    registered optimizer; subprocess tests (examples, distributed, CLI) run the defaults."""
    if request.module.__name__.endswith("test_fast_paths"):
        return
    monkeypatch.setattr(Optimizer, "fuse_updates", False)
