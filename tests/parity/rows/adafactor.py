"""Parity rows for :mod:`mlx_optim.optimizers.adafactor`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch

from tests.parity.harness import Row


# ----------------------------------------------------------------------------- big_vision transcription
def _bf16(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).float().numpy()


def _np_factored_dims(shape, min_dim_size_to_factor):
    """optax ``_factored_dims`` (``np.argsort``; no ties in the shapes used here)."""
    if len(shape) < 2:
        return None
    sorted_dims = np.argsort(shape)
    if shape[sorted_dims[-2]] < min_dim_size_to_factor:
        return None
    return int(sorted_dims[-2]), int(sorted_dims[-1])


class BigVisionAdafactorRef:
    """big_vision ``scale_by_adafactor`` + timm's lr / weight decay / caution, in NumPy float32.

    Per step, for each parameter (count = 0, 1, ... before the increment, as in optax):
    ``beta_t = min(beta2_cap, 1 - (count - decay_offset + 1) ** -decay_rate)``; factored RMS scaling
    (optax ``scale_by_factored_rms``); ``u / max(1, rms(u) / clipping_threshold)`` if a threshold is
    given (optax ``clip_by_block_rms``); ``optax.ema(momentum, debias=False, accumulator_dtype)``,
    whose ``decay * ema`` is evaluated in the accumulator dtype (JAX's weakly typed Python float)
    and whose update is the unrounded float32 average; timm's caution; ``p * (1 - lr * wd)`` (or
    ``p * (1 - wd)`` with ``unscaled_wd``) minus ``lr * u``.
    """

    def __init__(
        self,
        params,
        lr=1.0,
        epsilon=None,
        weight_decay=0.0,
        min_dim_size_to_factor=16,
        decay_rate=0.8,
        decay_offset=0,
        beta2_cap=0.999,
        momentum=0.9,
        momentum_dtype=mx.bfloat16,
        clipping_threshold=None,
        unscaled_wd=False,
        caution=False,
    ):
        self.params = list(params)
        self.lr, self.eps = np.float32(lr), np.float32(1e-30 if epsilon is None else epsilon)
        self.wd, self.min_dim, self.decay_rate, self.offset = (
            weight_decay,
            min_dim_size_to_factor,
            decay_rate,
            decay_offset,
        )
        self.cap, self.momentum, self.clip, self.unscaled_wd, self.caution = (
            beta2_cap,
            momentum,
            clipping_threshold,
            unscaled_wd,
            caution,
        )
        self.round = _bf16 if momentum_dtype == mx.bfloat16 else (lambda x: x.astype(np.float32))
        self.count = 0
        self.state = []
        for p in self.params:
            shape = tuple(p.shape)
            dims = _np_factored_dims(shape, self.min_dim)
            if dims is None:
                s = {"v": np.zeros(shape, np.float32)}
            else:
                d1, d0 = dims
                s = {
                    "v_row": np.zeros(np.delete(shape, d0), np.float32),
                    "v_col": np.zeros(np.delete(shape, d1), np.float32),
                }
            if momentum:
                s["ema"] = np.zeros(shape, np.float32)  # values representable in momentum_dtype
            self.state.append(s)

    def step(self, closure=None):
        f32 = np.float32
        t = f32(self.count - self.offset) + f32(1.0)
        beta = f32(min(f32(self.cap), f32(1.0) - t ** f32(-self.decay_rate)))
        for p, s in zip(self.params, self.state):
            g = p.grad.numpy().astype(f32)
            grad_sqr = g * g + self.eps
            dims = _np_factored_dims(g.shape, self.min_dim)
            if dims is None:
                s["v"] = beta * s["v"] + (f32(1.0) - beta) * grad_sqr
                u = g * s["v"] ** f32(-0.5)
            else:
                d1, d0 = dims
                s["v_row"] = beta * s["v_row"] + (f32(1.0) - beta) * grad_sqr.mean(axis=d0, dtype=f32)
                s["v_col"] = beta * s["v_col"] + (f32(1.0) - beta) * grad_sqr.mean(axis=d1, dtype=f32)
                reduced_d1 = d1 - 1 if d1 > d0 else d1
                row_col_mean = s["v_row"].mean(axis=reduced_d1, keepdims=True, dtype=f32)
                row_factor = (s["v_row"] / row_col_mean) ** f32(-0.5)
                col_factor = s["v_col"] ** f32(-0.5)
                u = g * np.expand_dims(row_factor, d0) * np.expand_dims(col_factor, d1)
            if self.clip:
                u = u / max(f32(1.0), np.sqrt(np.mean(u * u, dtype=f32)) / f32(self.clip))
            if self.momentum:
                m = f32(self.momentum)
                decayed = self.round(self.round(np.array(m)) * s["ema"])
                u = f32(1.0 - self.momentum) * u + decayed  # JAX: (1 - decay) is a Python float
                s["ema"] = self.round(u)
                if self.caution:
                    mask = (u * g > 0).astype(f32)
                    u = u * (mask / max(mask.mean(dtype=f32), f32(1e-3)))
            w = p.detach().numpy()
            if self.wd:
                w = w * (f32(1.0) - (f32(self.wd) if self.unscaled_wd else self.lr * f32(self.wd)))
            with torch.no_grad():
                p.copy_(torch.from_numpy((w - self.lr * u).astype(f32)))
        self.count += 1


F32 = {"momentum_dtype": mx.float32}


TF32 = {"momentum_dtype": torch.float32}


ROWS = [
    # adafactor: pytorch_optimizer.AdaFactor (foreach path on CPU; the cautious rows take its per-parameter path)
    # bf16 momentum: bit-exact since 1 - beta1 is the double-precision complement (was atol 6e-4: the float32
    # 1 - beta1 = 0.10000002 flipped ~1% of the bf16 roundings of exp_avg)
    Row("adafactor", {"learning_rate": 1e-2}),
    Row(
        "adafactor",
        {
            "learning_rate": 1e-2,
            "relative_step": False,
            "scale_parameter": False,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "ams_bound": True,
            "maximize": True,
            **F32,
        },
        ref_kwargs=TF32,
        id="lr-l2-ams-max-f32",
    ),
    Row(
        "adafactor",
        {
            "learning_rate": 1e-2,
            "betas": (None, 0.99),
            "warmup_init": True,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "clip_threshold": 0.5,
            "decay_rate": -0.5,
            "eps1": 1e-20,
            "eps2": 1e-2,
        },
        id="nomomentum-warmup-fixed",
    ),
    Row(
        "adafactor",
        {"learning_rate": 1e-2, "cautious": True, "weight_decay": 0.05, "betas": (0.75, 0.999), "relative_step": False},
        id="cautious-bf16",
    ),
    Row(
        "adafactor",
        {"learning_rate": 1e-2, "cautious": True, "betas": (0.3, 0.999), **F32},
        ref_kwargs=TF32,
        id="cautious-f32",
    ),
    Row(
        "adafactor",
        {"learning_rate": 1e-2, "momentum_dtype": mx.float16, "betas": (0.875, 0.999)},
        ref_kwargs={"momentum_dtype": torch.float16},
        id="f16-momentum",
    ),
    # adafactorbigvision: NumPy transcription of big_vision (harness shapes (7,), (5, 6), (2, 3, 4))
    Row("adafactorbigvision", {"learning_rate": 1e-2}, ref=BigVisionAdafactorRef),
    Row(
        "adafactorbigvision",
        {
            "learning_rate": 1e-2,
            "min_dim_size_to_factor": 3,
            "clipping_threshold": 1.0,
            "weight_decay": 0.1,
            "caution": True,
            "epsilon": 1e-20,
        },
        ref=BigVisionAdafactorRef,
        id="factored-clip-wd-caution",
    ),
    Row(
        "adafactorbigvision",
        {
            "learning_rate": 1e-2,
            "min_dim_size_to_factor": 5,
            "momentum": None,
            "decay_rate": 0.5,
            "decay_offset": -3,
            "beta2_cap": 0.9,
            "weight_decay": 0.1,
            "unscaled_wd": True,
            "clipping_threshold": 0.5,
        },
        ref=BigVisionAdafactorRef,
        id="nomomentum-offset-cap-unscaled",
    ),
    Row(
        "adafactorbigvision",
        {"learning_rate": 1e-2, "min_dim_size_to_factor": 2, "momentum": 0.8, "caution": True, **F32},
        ref=BigVisionAdafactorRef,
        id="f32-momentum",
    ),
]
