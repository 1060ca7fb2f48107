"""Parity rows for the schedule-free optimizers (pytorch_optimizer ScheduleFreeSGD / AdamW / RAdam).

Besides the per-step rows, ``swap`` rows drive a script of steps and ``eval()`` / ``train()`` calls on both
sides and compare the parameters after every action, so the y <-> x swap is checked against the reference.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from tests.parity.harness import Row, initial_params, loss_and_grads, mlx_stepper

# 8 steps, eval (x), eval again (no-op), train (back to y), 6 more steps, eval, train, 1 step.
SCRIPT = ["step"] * 8 + ["eval", "eval", "train"] + ["step"] * 6 + ["eval", "train", "step"]


def _swap_runner(row, compiled):
    import pytorch_optimizer
    import torch

    init = initial_params()
    # reference
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    topt = pytorch_optimizer.load_optimizer(row.name)(list(tparams.values()), **row.torch_kwargs())
    ref, t = [], 0
    for action in SCRIPT:
        if action == "step":
            _, grads = loss_and_grads({k: p.detach().numpy() for k, p in tparams.items()}, t)
            for k, p in tparams.items():
                p.grad = torch.from_numpy(grads[k].copy())
            topt.step()
            t += 1
        else:
            getattr(topt, action)()
        ref.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
    # mlx: the parameter-tree form of eval()/train()
    opt, holder, step = mlx_stepper(row, compiled, init)
    mine, t = [], 0
    for action in SCRIPT:
        if action == "step":
            _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
            step({k: mx.array(g) for k, g in grads.items()})
            t += 1
        else:
            holder["params"] = getattr(opt, action)(holder["params"])
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, ref


def swap_row(name, kwargs, id):
    return Row(name, kwargs, id=id, steps=len(SCRIPT), runner=_swap_runner)


ROWS = [
    # ScheduleFreeSGD
    Row("schedulefreesgd", {"learning_rate": 1e-1}),
    Row(
        "schedulefreesgd",
        {
            "learning_rate": 1e-1,
            "momentum": 0.8,
            "weight_decay": 0.1,
            "r": 1.0,
            "weight_lr_power": 1.0,
            "warmup_steps": 5,
            "maximize": True,
        },
        id="wd-r-warmup-max",
    ),
    swap_row("schedulefreesgd", {"learning_rate": 1e-1, "momentum": 0.8}, "swap"),
    # ScheduleFreeAdamW
    Row("schedulefreeadamw", {"learning_rate": 1e-2}),
    Row(
        "schedulefreeadamw",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.1,
            "r": 0.5,
            "weight_lr_power": 0.0,
            "warmup_steps": 4,
            "ams_bound": True,
            "eps": 1e-6,
        },
        id="wd-ams-warmup",
    ),
    Row(
        "schedulefreeadamw",
        {"learning_rate": 1e-2, "decoupling_c": 50.0, "maximize": True},
        id="decoupling-max",
    ),
    swap_row("schedulefreeadamw", {"learning_rate": 1e-2, "betas": (0.85, 0.99)}, "swap"),
    # ScheduleFreeRAdam
    Row("schedulefreeradam", {"learning_rate": 1e-1}),
    Row(
        "schedulefreeradam",
        {
            "learning_rate": 1e-2,
            "betas": (0.85, 0.9),
            "weight_decay": 0.1,
            "r": 1.0,
            "weight_lr_power": 1.0,
            "silent_sgd_phase": False,
            "eps": 1e-6,
            "maximize": True,
        },
        id="wd-loud-sgd-max",
    ),
    swap_row("schedulefreeradam", {"learning_rate": 1e-1, "betas": (0.9, 0.95)}, "swap"),
]
