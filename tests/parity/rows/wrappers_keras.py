"""Parity rows for :mod:`mlx_optim.wrappers.keras`."""

from __future__ import annotations

import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Row
from tests.parity.runners.wrappers_inner import ADAMW, SGD
from tests.parity.runners.wrappers_torch import TorchKerasOptions


class TorchKerasOptionsAGC(TorchKerasOptions):
    """The Keras transcription plus pytorch_optimizer's ``agc`` before the Keras clipping, and the skip of a
    call whose gradients are not all finite (Keras' ``LossScaleOptimizer``)."""

    def __init__(self, params, *args, agc_clipping_value=None, agc_eps=1e-3, skip_nonfinite=None, **kwargs):
        super().__init__(params, *args, **kwargs)
        self.agc_clipping_value, self.agc_eps = agc_clipping_value, agc_eps
        self.skip = self.scale is not None if skip_nonfinite is None else skip_nonfinite

    def _update(self, grads):
        from pytorch_optimizer.optimizer.agc import agc

        if self.agc_clipping_value is not None:
            grads = [agc(p.detach(), g, self.agc_eps, self.agc_clipping_value) for p, g in zip(self.params, grads)]
        super()._update(grads)

    @torch.no_grad()
    def step(self, closure=None):
        if self.skip and not all(bool(torch.isfinite(p.grad).all()) for p in self.params):
            return
        super().step(closure)


ROWS = [
    # KerasOptions: torch transcription of Keras 3's base-class options around the same torch optimizer.
    Row("kerasoptions", {"optimizer": "sgd", "learning_rate": 0.1}, ref=TorchKerasOptions),
    Row(
        "kerasoptions",
        {
            "optimizer": "adamw",
            "learning_rate": 1e-2,
            "clipnorm": 1.0,
            "use_ema": True,
            "ema_momentum": 0.9,
            "ema_overwrite_frequency": 3,
            "loss_scale_factor": 128.0,
        },
        ref=TorchKerasOptions,
        id="clipnorm-ema-scale",
    ),
    Row(
        "kerasoptions",
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "optimizer_kwargs": {"momentum": 0.9},
            "global_clipnorm": 2.0,
            "gradient_accumulation_steps": 3,
            "use_ema": True,
        },
        ref=TorchKerasOptions,
        id="global-accumulate-ema",
    ),
    Row(
        "kerasoptions",
        {
            "optimizer": "adamw",
            "learning_rate": 1e-2,
            "clipvalue": 0.5,
            "gradient_accumulation_steps": 2,
            "use_ema": True,
            "ema_momentum": 0.5,
            "ema_overwrite_frequency": 2,
        },
        ref=TorchKerasOptions,
        id="value-accumulate-overwrite",
    ),
    # KerasOptions: adaptive gradient clipping and the non-finite skip (the harness's gradients are finite,
    # so the skip must leave these trajectories alone; tests/test_wrappers_extra.py checks the skip itself).
    Row("kerasoptions", {**SGD, "agc_clipping_value": 0.05}, ref=TorchKerasOptionsAGC, id="agc"),
    Row(
        "kerasoptions",
        {
            **ADAMW,
            "agc_clipping_value": 0.1,
            "agc_eps": 0.5,
            "clipvalue": 0.5,
            "loss_scale_factor": 64.0,
            "gradient_accumulation_steps": 2,
            "use_ema": True,
        },
        ref=TorchKerasOptionsAGC,
        id="agc-scale-skip-accumulate",
    ),
]
