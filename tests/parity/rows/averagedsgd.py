"""Parity rows for :mod:`mlx_optim.optimizers.averagedsgd`."""

from __future__ import annotations

import torch

from tests.parity.harness import Portable, Row, initial_params, loss_and_grads, torch_params


def _averaged_sgd_ax_reference(row):
    """The running average ``ax`` (not the parameters) of torch.optim.ASGD's ``state[p]['ax']``; ours is
    ``opt.state[k]["ax"]`` (program option ``record="state:ax"``)."""
    params = torch_params(initial_params())
    opt = torch.optim.ASGD(list(params.values()), **row.torch_kwargs())
    ref = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        opt.step()
        ref.append({k: opt.state[p]["ax"].numpy().copy() for k, p in params.items()})
    return ref


_averaged_sgd_ax_runner = Portable("standard", _averaged_sgd_ax_reference, {"with_loss": False, "record": "state:ax"})


# ---------------------------------------------------------------------------- AveragedSGD: the average too


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
