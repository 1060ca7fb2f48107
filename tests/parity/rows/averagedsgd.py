"""Parity rows for :mod:`mlx_optim.optimizers.averagedsgd`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, loss_and_grads


def _mlx_trajectory(row, compiled, extract):
    """Like ``harness.run_mlx`` but records ``extract(params, opt)`` after every step."""
    holder = {"params": {k: mx.array(v) for k, v in initial_params().items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        traj.append(extract(holder["params"], opt))
    return traj


# ---------------------------------------------------------------------------- AveragedSGD: the average too
def _averaged_sgd_ax_runner(row, compiled):
    """Compare the running average ``ax`` (not the parameters) with torch.optim.ASGD's ``state[p]['ax']``."""
    mine = _mlx_trajectory(row, compiled, lambda params, opt: {k: np.array(opt.state[k]["ax"]) for k in params})
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in initial_params().items()}
    opt = torch.optim.ASGD(list(params.values()), **row.torch_kwargs())
    ref = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        opt.step()
        ref.append({k: opt.state[p]["ax"].numpy().copy() for k, p in params.items()})
    return mine, ref


ROWS = [
    # AveragedSGD: torch.optim.ASGD
    Row("averagedsgd", {"learning_rate": 1e-2}, ref=torch.optim.ASGD),
    Row(
        "averagedsgd",
        {"learning_rate": 5e-2, "lambd": 0.1, "alpha": 0.5, "t0": 5.0, "weight_decay": 0.1, "maximize": True},
        ref=torch.optim.ASGD,
        id="options",
    ),
    Row(
        "averagedsgd",
        {"learning_rate": 5e-2, "lambd": 0.1, "t0": 5.0},
        ref=torch.optim.ASGD,
        runner=_averaged_sgd_ax_runner,
        id="average",
    ),
]
