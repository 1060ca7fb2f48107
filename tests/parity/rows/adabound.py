"""Parity rows for :mod:`mlx_optim.optimizers.adabound`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, loss_and_grads


def _warmup_decay(step):
    """A learning-rate schedule that starts at 0 (warm-up over 3 steps, then decay), as a factor of ``lr``."""
    return np.minimum(step / 3.0, 1.0) * 0.9**step


def _scheduled_runner(row: Row, compiled: bool):
    """Run ``row`` with ``learning_rate * _warmup_decay(step)``: an MLX schedule vs setting the torch group's lr.

    The torch optimizer is built with the schedule's first value (0), as a torch user
    warming up from zero would; AdaBound then takes the first positive rate as its
    base rate on both sides, and ``final_lr`` scales with the rate afterwards.
    """
    lr = row.kwargs["learning_rate"]
    kwargs = {**row.kwargs, "learning_rate": lambda step: lr * mx.minimum(step / 3.0, 1.0) * mx.power(0.9, step)}
    init = initial_params()
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ref = pytorch_optimizer.load_optimizer(row.name)(list(params.values()), **{**row.torch_kwargs(), "lr": 0.0})
    opt = mlx_optim.load_optimizer(row.name)(**kwargs)
    holder = {"params": {k: mx.array(v) for k, v in init.items()}}
    opt.init(holder["params"])

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        step = mx.compile(step, inputs=[holder, opt.state], outputs=[holder, opt.state])
    mine, theirs = [], []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k])
        for group in ref.param_groups:
            group["lr"] = float(lr * _warmup_decay(t))
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in params.items()})
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, theirs


def _group_option(cls, *keys):
    """Factory: ``cls`` with ``keys`` in its one parameter group (the reference reads them only from the group)."""

    def factory(params, **kw):
        group = {"params": list(params), **{k: kw.pop(k) for k in keys if k in kw}}
        return cls([group], **kw)

    return factory


ROWS = [
    # adabound / adaboundw (reference: pytorch_optimizer.AdaBound)
    Row("adabound", {"learning_rate": 1e-2}),
    Row(
        "adabound",
        {
            "learning_rate": 1e-2,
            "final_lr": 0.05,
            "gamma": 1e-2,
            "ams_bound": True,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "betas": (0.8, 0.99),
        },
        id="ams-l2",
    ),
    Row(
        "adabound",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True, "eps": 1e-6, "maximize": True},
        id="fixed-max",
    ),
    Row(
        "adabound",
        {"learning_rate": 1e-2, "final_lr": 0.05, "gamma": 0.05, "weight_decay": 0.1},
        runner=_scheduled_runner,
        id="warmup-schedule",
    ),
    Row(
        "adabound",
        {"learning_rate": 1e-2, "final_lr": 0.05, "adam_debias": True, "weight_decay": 0.1},
        ref=_group_option(pytorch_optimizer.AdaBound, "adam_debias"),
        id="adam-debias",
    ),
    Row("adaboundw", {"learning_rate": 1e-2}, ref=pytorch_optimizer.AdaBound),
    Row(
        "adaboundw",
        {
            "learning_rate": 1e-2,
            "final_lr": 0.2,
            "gamma": 0.1,
            "weight_decay": 0.1,
            "ams_bound": True,
            "maximize": True,
        },
        ref=pytorch_optimizer.AdaBound,
        id="ams-max",
    ),
    Row(
        "adaboundw",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "weight_decouple": False, "fixed_decay": True},
        ref=pytorch_optimizer.AdaBound,
        id="l2",
    ),
    Row(
        "adaboundw",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "fixed_decay": True},
        ref=pytorch_optimizer.AdaBound,
        id="fixed",
    ),
]
