"""Parity rows for :mod:`mlx_optim.wrappers.grokfast`."""

from __future__ import annotations

import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Row
from tests.parity.runners.wrappers_inner import ADAMW, SGD, SGDM
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs


def _module(params) -> torch.nn.Module:
    module = torch.nn.Module()
    for i, p in enumerate(params):
        module.register_parameter(f"p{i}", p)
    return module


class TorchGradFilter:
    """``grads = gradfilter_xx(model, grads=grads, **kwargs)`` after backward, then ``optimizer.step()``."""

    def __init__(self, params, filter_fn, optimizer, lr=None, optimizer_kwargs=None, **kwargs):
        params = list(params)
        self.module = _module(params)
        self.base = _torch_class(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
        self.filter_fn, self.kwargs, self.grads = filter_fn, kwargs, None

    def step(self, closure=None):
        self.grads = self.filter_fn(self.module, grads=self.grads, **self.kwargs)
        self.base.step()


def torch_gradfilter_ma(params, **kwargs):
    from pytorch_optimizer.optimizer.grokfast import gradfilter_ma

    return TorchGradFilter(params, gradfilter_ma, **kwargs)


def torch_gradfilter_ema(params, **kwargs):
    from pytorch_optimizer.optimizer.grokfast import gradfilter_ema

    return TorchGradFilter(params, gradfilter_ema, **kwargs)


ROWS = [
    # Grokfast MA (105 steps so the default window of 100 fills and the filter acts).
    Row("gradfilterma", dict(SGD), ref=torch_gradfilter_ma, steps=105),
    Row(
        "gradfilterma",
        {**ADAMW, "window_size": 4, "lamb": 2.0, "filter_type": "sum"},
        ref=torch_gradfilter_ma,
        id="sum-w4",
    ),
    Row("gradfilterma", {**SGDM, "window_size": 5, "warmup": False}, ref=torch_gradfilter_ma, id="no-warmup"),
    # Grokfast EMA
    Row("gradfilterema", dict(SGD), ref=torch_gradfilter_ema),
    Row("gradfilterema", {**ADAMW, "alpha": 0.8, "lamb": 0.5}, ref=torch_gradfilter_ema, id="adamw"),
    Row("gradfilterema", {**SGDM, "alpha": 0.3, "lamb": 1.0}, ref=torch_gradfilter_ema, id="alpha-low"),
]
