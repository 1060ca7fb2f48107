"""Parity rows for :mod:`mlx_optim.wrappers.lookahead`."""

from __future__ import annotations

import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Row
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs


def torch_lookahead(params, optimizer, lr=None, optimizer_kwargs=None, **kwargs):
    import pytorch_optimizer

    inner = _torch_class(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
    return pytorch_optimizer.Lookahead(inner, **kwargs)


class TorchScout:
    """holocron's ``Scout`` step (``shared/reference/seeds-001-004.md`` §1.9) in torch, around a torch optimizer.

    0/0 in ``std / max_dev`` counts as 0 (holocron would produce NaN), as in ``mlx_optim.Scout``.
    """

    def __init__(self, params, base_optimizer, lr=None, optimizer_kwargs=None, sync_rate=0.5, sync_period=6):
        self.params = list(params)
        self.base = _torch_class(base_optimizer)(self.params, **_torch_inner_kwargs(lr, optimizer_kwargs))
        self.sync_rate, self.sync_period = sync_rate, sync_period
        self.slow = [p.detach().clone() for p in self.params]
        self.buffer = [s.unsqueeze(0) for s in self.slow]
        self.fast_steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.base.step()
        self.fast_steps += 1
        self.buffer = [torch.cat([b, p.detach().unsqueeze(0)]) for b, p in zip(self.buffer, self.params)]
        if self.fast_steps % self.sync_period == 0:
            sims = []
            for b in self.buffer:
                update = b[1:] - b[:-1]
                max_dev = (update - update.mean(0)).abs().max(0).values
                std = update.std(0) if update.shape[0] > 1 else torch.zeros_like(max_dev)
                ratio = torch.where(max_dev > 0, std / torch.where(max_dev > 0, max_dev, 1.0), 0.0)
                sims.append(ratio.mean())
            coherence = torch.stack(sims).mean()
            rate = torch.maximum(1 - coherence, torch.tensor(self.sync_rate, dtype=torch.float32))
            for p, s in zip(self.params, self.slow):
                s.add_(rate * (p - s))
                p.copy_(s)
            self.buffer = [s.unsqueeze(0) for s in self.slow]


ROWS = [
    # Lookahead: the standard harness, pytorch_optimizer.Lookahead around the same torch optimizer.
    Row("lookahead", {"optimizer": "sgd", "learning_rate": 0.1}, ref=torch_lookahead),
    Row(
        "lookahead",
        {"optimizer": "adamw", "learning_rate": 1e-2, "k": 3, "alpha": 0.8, "optimizer_kwargs": {"weight_decay": 0.1}},
        ref=torch_lookahead,
        id="adamw-k3",
    ),
    Row(
        "lookahead",
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "k": 4,
            "pullback_momentum": "reset",
            "optimizer_kwargs": {"momentum": 0.9},
        },
        ref=torch_lookahead,
        id="reset",
    ),
    Row(
        "lookahead",
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "k": 3,
            "alpha": 0.3,
            "pullback_momentum": "pullback",
            "optimizer_kwargs": {"momentum": 0.9, "nesterov": True},
        },
        ref=torch_lookahead,
        id="pullback",
    ),
    # Scout: torch transcription of holocron's algorithm.
    Row("scout", {"base_optimizer": "sgd", "learning_rate": 0.1}, ref=TorchScout),
    Row(
        "scout",
        {"base_optimizer": "adamw", "learning_rate": 1e-2, "sync_rate": 0.2, "sync_period": 3},
        ref=TorchScout,
        id="adamw-p3",
    ),
    Row("scout", {"base_optimizer": "sgd", "learning_rate": 0.1, "sync_period": 1}, ref=TorchScout, id="p1"),
]
