"""Parity rows for :mod:`mlx_optim.optimizers.kron`."""

from __future__ import annotations

from unittest import mock

import mlx.core as mx
import numpy as np
import torch

from tests.parity.harness import Row


class KronSeeded:
    """``pytorch_optimizer.Kron`` with its random draws taken from mlx_optim.Kron's key schedule.

    The reference draws the probe with ``torch.randn_like`` (once per parameter on update steps)
    and the balance decision with ``np.random.random()`` (once per step). Both are replaced by the
    numbers ``mlx_optim.Kron(seed=...)`` draws: per step the key is split into (next key, balance
    key, probe key) and the probe key is split once per parameter in order. Everything else is the
    unmodified reference, so the rows compare exactly.
    """

    def __init__(self, params, seed: int = 0, **kwargs):
        from pytorch_optimizer import Kron

        self.opt = Kron(params, **kwargs)
        self.key = mx.random.key(seed)

    def step(self, closure=None):
        keys = mx.random.split(self.key, 3)
        self.key = keys[0]
        u = mx.random.uniform(key=keys[1]).item()
        probe = [keys[2]]

        def randn_like(t, dtype=None, **_):
            k, probe[0] = mx.random.split(probe[0])
            return torch.from_numpy(np.array(mx.random.normal(tuple(t.shape), key=k))).to(dtype or t.dtype)

        with mock.patch("torch.randn_like", randn_like), mock.patch("numpy.random.random", lambda: u):
            return self.opt.step(closure)


ROWS = [
    # kron: exact parity with the reference's random draws replaced by ours (see KronSeeded)
    Row("kron", {"learning_rate": 1e-2}, ref=KronSeeded),
    Row(
        "kron",
        {
            "learning_rate": 1e-2,
            "momentum": 0.5,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "pre_conditioner_update_probability": 0.5,
            "memory_save_mode": "one_diag",
            "momentum_into_precondition_update": False,
            "balance_prob": 1.0,
            "maximize": True,
            "seed": 3,
        },
        ref=KronSeeded,
        id="l2-half-onediag-balance-max",
    ),
    Row(
        "kron",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "memory_save_mode": "smart_one_diag",
            "max_size_triangular": 4,
            "balance_prob": 0.5,
            "pre_conditioner_update_probability": 0.3,
        },
        ref=KronSeeded,
        id="decoupled-smart-maxsize",
    ),
    Row(
        "kron",
        {"learning_rate": 1e-2, "memory_save_mode": "all_diag", "min_ndim_triangular": 3},
        ref=KronSeeded,
        id="alldiag",
    ),
    Row("kron", {"learning_rate": 1e-2, "min_ndim_triangular": 3}, ref=KronSeeded, id="min-ndim3"),
]
