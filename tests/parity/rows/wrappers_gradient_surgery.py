"""Parity rows for :mod:`mlx_optim.wrappers.gradient_surgery`."""

from __future__ import annotations

import types

import mlx.core as mx
import numpy as np
import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from mlx_optim.check.programs import NUM_TASKS, task_grads
from mlx_optim.wrappers.gradient_surgery import pcgrad_orders
from tests.parity.harness import SHAPES, Portable, Row, initial_params
from tests.parity.runners.wrappers_inner import ADAMW, SGD, SGDM
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs

# task_grads (per-task gradients, float64 -> float32) and the MLX side live in mlx_optim.check.programs.


# ---------------------------------------------------------------------------- the multi-task problem


def _split(row: Row) -> tuple[dict, dict]:
    kw = {k: v for k, v in row.kwargs.items() if k != "state_dtype"}
    inner = _torch_inner_kwargs(kw.pop("learning_rate", None), kw.pop("optimizer_kwargs", None))
    return inner, kw


def keras_project_conflicting(grads: list[torch.Tensor], has_grads: list[torch.Tensor], reduction: str):
    """The Keras seed's ``PPCGrad.project_conflicting`` (the per-process body, run in task order) in torch."""
    shared = torch.stack(has_grads).prod(0).bool()
    pc_grad = [g.clone() for g in grads]
    for i in range(len(pc_grad)):
        g_i = pc_grad[i].clone()  # the unprojected gradient: the dot products never see the projections
        for g_j in grads:
            dot = torch.dot(g_i, g_j)
            if dot < 0:
                pc_grad[i] = pc_grad[i] - dot * g_j / torch.sum(g_j * g_j)
    stacked = torch.stack(pc_grad)
    mask = shared.to(stacked.dtype)
    merged_shared = (stacked * mask).mean(0) if reduction == "mean" else (stacked * mask).sum(0)
    return merged_shared + (stacked * (1.0 - mask)).sum(0)


def run_torch_tasks(row: Row, partial: bool) -> list[dict[str, np.ndarray]]:
    import pytorch_optimizer
    import pytorch_optimizer.optimizer.pcgrad as pcgrad_module

    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in initial_params().items()}
    plist = list(params.values())
    inner_kw, kw = _split(row)
    base = _torch_class(kw.pop("optimizer"))(plist, **inner_kw)
    reduction = kw.pop("reduction", "mean")
    key = mx.random.key(kw.pop("seed", 0))
    orders: list[list[int]] = []
    shuffled = {"orig": None, "calls": 0}

    def shuffle(lst):  # stands in for random.shuffle: task i's order is the one MLX drew
        if shuffled["orig"] is None:
            shuffled["orig"] = list(lst)
        lst[:] = [shuffled["orig"][k] for k in orders[shuffled["calls"]]]
        shuffled["calls"] += 1

    opt = pytorch_optimizer.PCGrad(base, reduction=reduction) if row.name == "pcgrad" else None
    saved = pcgrad_module.random
    pcgrad_module.random = types.SimpleNamespace(shuffle=shuffle)
    traj = []
    try:
        for t in range(row.steps):
            grads = task_grads({k: p.detach().numpy() for k, p in params.items()}, t, partial)
            if row.name == "pcgrad":
                key, sub = mx.random.split(key)
                orders[:] = np.array(pcgrad_orders(sub, NUM_TASKS)).tolist()
                shuffled.update(orig=None, calls=0)
                objectives = [sum((params[k] * torch.from_numpy(g)).sum() for k, g in task.items()) for task in grads]
                opt.pc_backward(objectives)
                assert shuffled["calls"] == NUM_TASKS
                opt.step()
            else:
                flat = [torch.cat([torch.from_numpy(task.get(k, np.zeros(s, np.float32))).reshape(-1)
                                   for k, s in SHAPES.items()]) for task in grads]  # fmt: skip
                has = [torch.cat([torch.full((int(np.prod(s)),), float(k in task)) for k, s in SHAPES.items()])
                       for task in grads]  # fmt: skip
                merged = keras_project_conflicting(flat, has, reduction)
                start = 0
                for k, s in SHAPES.items():
                    n = int(np.prod(s))
                    params[k].grad = merged[start : start + n].reshape(s).clone()
                    start += n
                base.step()
            traj.append({k: p.detach().numpy().copy() for k, p in params.items()})
    finally:
        pcgrad_module.random = saved
    return traj


task_runner = Portable("tasks", lambda row: run_torch_tasks(row, False), {"partial": False})
partial_task_runner = Portable("tasks", lambda row: run_torch_tasks(row, True), {"partial": True})


ROWS = [
    # PCGrad: pytorch_optimizer.PCGrad with the task orders injected.
    Row("pcgrad", dict(SGD), runner=task_runner),
    Row("pcgrad", {**ADAMW, "reduction": "sum", "seed": 5}, runner=task_runner, id="sum-adamw"),
    Row("pcgrad", {**SGDM, "seed": 2}, runner=partial_task_runner, id="partial-mean"),
    Row("pcgrad", {**SGDM, "reduction": "sum"}, runner=partial_task_runner, id="partial-sum"),
    # PPCGrad: torch transcription of the Keras seed's PPCGrad.project_conflicting.
    Row("ppcgrad", dict(SGD), runner=task_runner),
    Row("ppcgrad", {**ADAMW, "reduction": "sum"}, runner=task_runner, id="sum-adamw"),
    Row("ppcgrad", dict(SGDM), runner=partial_task_runner, id="partial-mean"),
]
