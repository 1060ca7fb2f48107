"""Shared fixtures. The references (torch, pytorch_optimizer) are required: a missing one is an error, not a skip."""

import pytorch_optimizer  # noqa: F401
import torch  # noqa: F401  (fail loudly if the pinned reference is missing)
