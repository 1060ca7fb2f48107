"""Parity rows for :mod:`mlx_optim.optimizers.gravity`."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, run_mlx, run_reference


# ---------------------------------------------------------------------------- Gravity: inject the initial velocity
class _GravityWithVelocity(pytorch_optimizer.Gravity):
    """pytorch_optimizer.Gravity whose random initial velocity is replaced by given arrays."""

    def __init__(self, params, v0, **kwargs):
        super().__init__(params, **kwargs)
        self._v0 = v0

    def init_group(self, group, **kwargs):
        fresh = [p for p in group["params"] if len(self.state[p]) == 0]
        super().init_group(group, **kwargs)
        for p in fresh:
            self.state[p]["v"].copy_(torch.from_numpy(self._v0[id(p)]))


def _gravity_runner(row, compiled):
    """Exact parity given the same initial velocity: ours (seeded key) is copied into the reference."""
    probe = mlx_optim.load_optimizer(row.name)(**row.kwargs)  # same seed -> the same draw as run_mlx's
    init = {k: mx.array(v) for k, v in initial_params().items()}
    probe.init(init)
    v0 = [np.array(probe.state[k]["v"]) for k in init]

    def factory(params, **kw):
        return _GravityWithVelocity(params, {id(p): v for p, v in zip(params, v0)}, **kw)

    plain = dataclasses.replace(row, runner=None, ref=factory)
    return run_mlx(plain, compiled), run_reference(plain)


def _velocity_stats(v, sigma):
    v = np.asarray(v, np.float64).ravel() / sigma
    return np.array([v.mean(), v.std(), np.mean(np.abs(v) < 1), np.mean(np.abs(v) < 2)])


def _gravity_noise_runner(row, compiled):
    """Statistics of the initial velocity N(0, (alpha/lr)^2) on a 100k-element parameter, ours vs torch's."""
    lr, alpha = row.kwargs["learning_rate"], row.kwargs["alpha"]
    shape = (400, 250)
    opt = mlx_optim.Gravity(**row.kwargs)
    opt.init({"w": mx.zeros(shape)})
    mine = _velocity_stats(np.array(opt.state["w"]["v"]), alpha / lr)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.zeros(shape))
    p.grad = torch.zeros(shape)
    ref_opt = pytorch_optimizer.Gravity([p], lr=lr, alpha=alpha)
    ref_opt.init_group(ref_opt.param_groups[0])
    ref = _velocity_stats(ref_opt.state[p]["v"].numpy(), alpha / lr)
    return [{"stats": mine}] * row.steps, [{"stats": ref}] * row.steps


ROWS = [
    # Gravity: the same initial velocity on both sides (exact), plus the statistics of the random draw
    Row("gravity", {"learning_rate": 1e-2}, runner=_gravity_runner),
    Row(
        "gravity",
        {"learning_rate": 1e-2, "alpha": 0.1, "beta": 0.5, "maximize": True, "seed": 3},
        runner=_gravity_runner,
        id="options",
    ),
    Row(
        "gravity",
        {"learning_rate": 1e-2, "alpha": 0.01},
        runner=_gravity_noise_runner,
        steps=1,
        atol=0.02,
        rtol=0.0,
        note="random initial velocity: compares mean/std and the 1- and 2-sigma fractions of 100k N(0, (alpha/lr)^2) "
        "draws (ours vs torch's, in units of alpha/lr); the standard errors are <= 3e-3",
        id="noise-stats",
    ),
]
