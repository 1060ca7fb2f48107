"""Parity rows for :mod:`mlx_optim.wrappers.magma`."""

from __future__ import annotations

from unittest import mock

import numpy as np
import torch

import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import SHAPES, Row, initial_params, run_mlx, run_reference


def _torch_inner_kwargs(lr, optimizer_kwargs) -> dict:
    kw = {
        ("lr" if k == "learning_rate" else k): (tuple(v) if isinstance(v, list) else v)
        for k, v in (optimizer_kwargs or {}).items()
    }
    if lr is not None:
        kw["lr"] = lr
    return kw


def torch_magma(params, optimizer, lr=None, optimizer_kwargs=None, exclude=None, **kwargs):
    """``pytorch_optimizer.Magma`` around the torch optimizer named ``optimizer``; ``exclude`` names leaves."""
    import pytorch_optimizer

    params = list(params)
    inner = pytorch_optimizer.load_optimizer(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
    names = list(SHAPES)
    excluded = {params[names.index(n)] for n in (exclude or ())}
    return pytorch_optimizer.Magma(inner, exclude=excluded, **kwargs)


def magma_runner(row: Row, compiled: bool):
    mine = run_mlx(row, compiled)
    excluded = set(row.kwargs.get("exclude") or ())
    prev = initial_params()
    draws = []
    for step in mine:
        for k in SHAPES:
            if k not in excluded:
                draws.append(float(not np.array_equal(step[k], prev[k])))
        prev = step
    p = row.kwargs.get("mask_prob", 0.5)
    kept = float(np.mean(draws))
    assert abs(kept - p) < 0.2, f"{row.label}: kept fraction {kept:.2f} implausible for mask_prob={p}"
    it = iter(draws)

    def bernoulli(prob, *args, **kwargs):
        return torch.tensor(next(it), dtype=prob.dtype)

    with mock.patch.object(torch, "bernoulli", side_effect=bernoulli):
        ref = run_reference(row)
    assert next(it, None) is None, f"{row.label}: the reference drew fewer masks than MLX"
    return mine, ref


REPLAY = "random masks: MLX's draws replayed into torch.bernoulli (default tolerance); kept fraction checked"


MAGMA_ROWS = [
    # defaults around AdamW (the reference's "params" form), auto moment = AdamW's exp_avg
    Row(
        "magma",
        {"optimizer": "adamw", "learning_rate": 1e-2},
        ref=torch_magma,
        runner=magma_runner,
        steps=40,
        note=REPLAY,
        id="default",
    ),
    # deterministic: every update kept, SGD's momentum_buffer as the moment, other tau / alignment_ema
    Row(
        "magma",
        {
            "optimizer": "sgd",
            "learning_rate": 0.05,
            "optimizer_kwargs": {"momentum": 0.9},
            "mask_prob": 1.0,
            "tau": 0.5,
            "alignment_ema": 0.6,
        },
        ref=torch_magma,
        id="sgd-keep-all",
    ),
    # Magma's own momentum (moment_key=None), an excluded leaf, another mask_prob
    Row(
        "magma",
        {
            "optimizer": "adamw",
            "learning_rate": 1e-2,
            "optimizer_kwargs": {"weight_decay": 0.1, "betas": (0.8, 0.95)},
            "mask_prob": 0.7,
            "tau": 1.0,
            "momentum_beta": 0.7,
            "alignment_ema": 0.8,
            "moment_key": None,
            "exclude": ["b"],
        },
        ref=torch_magma,
        runner=magma_runner,
        steps=40,
        note=REPLAY,
        id="fallback-exclude",
    ),
    # a named moment key; inner maximize (Magma's cosine uses the raw gradient)
    Row(
        "magma",
        {
            "optimizer": "adam",
            "learning_rate": 1e-2,
            "optimizer_kwargs": {"maximize": True},
            "mask_prob": 1.0,
            "moment_key": "exp_avg_sq",
            "tau": 3.0,
        },
        ref=torch_magma,
        id="named-key-maximize",
    ),
    # SGD without momentum has no first moment: "auto" falls back to Magma's own EMA
    Row(
        "magma",
        {"optimizer": "sgd", "learning_rate": 0.05, "mask_prob": 0.3, "momentum_beta": 0.5},
        ref=torch_magma,
        runner=magma_runner,
        steps=40,
        note=REPLAY,
        id="auto-fallback",
    ),
]


ROWS = [
    *MAGMA_ROWS,
]
