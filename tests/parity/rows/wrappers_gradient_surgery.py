"""Parity rows for :mod:`mlx_optim.wrappers.gradient_surgery`."""

from __future__ import annotations

import functools
import types

import mlx.core as mx
import numpy as np
import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from mlx_optim.wrappers.gradient_surgery import pcgrad_orders
from tests.parity.harness import SHAPES, Row, _problem, initial_params, scale
from tests.parity.runners.wrappers_inner import ADAMW, SGD, SGDM
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs

NUM_TASKS = 3


# ---------------------------------------------------------------------------- the multi-task problem
@functools.cache
def _task_targets() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    return [{k: 2.0 * rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(NUM_TASKS)]


def task_grads(params: dict[str, np.ndarray], t: int, partial: bool) -> list[dict[str, np.ndarray]]:
    """Per-task gradients (float64 -> float32); with ``partial`` task 1 has no gradient for ``c``."""
    _, noise = _problem()
    s = scale(t)
    out = []
    for i, target in enumerate(_task_targets()):
        g = {}
        for k, p32 in params.items():
            if partial and i == 1 and k == "c":
                continue
            p = p32.astype(np.float64)
            g[k] = (s * ((p - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(np.float32)
        out.append(g)
    return out


def _split(row: Row) -> tuple[dict, dict]:
    kw = {k: v for k, v in row.kwargs.items() if k != "state_dtype"}
    inner = _torch_inner_kwargs(kw.pop("learning_rate", None), kw.pop("optimizer_kwargs", None))
    return inner, kw


def run_mlx_tasks(row: Row, compiled: bool, partial: bool) -> list[dict[str, np.ndarray]]:
    holder = {"params": {k: mx.array(v) for k, v in initial_params().items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])

    def step(tasks):
        holder["params"] = opt.apply_gradients(tasks, holder["params"])

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(row.steps):
        grads = task_grads({k: np.array(v) for k, v in holder["params"].items()}, t, partial)
        step([{k: mx.array(g) for k, g in task.items()} for task in grads])
        mx.eval(holder, opt.state)
        traj.append({k: np.array(v) for k, v in holder["params"].items()})
    return traj


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


_TASK_REF_CACHE: dict[str, list] = {}


def task_runner(row: Row, compiled: bool, partial: bool = False):
    if row.label not in _TASK_REF_CACHE:
        _TASK_REF_CACHE[row.label] = run_torch_tasks(row, partial)
    return run_mlx_tasks(row, compiled, partial), _TASK_REF_CACHE[row.label]


def partial_task_runner(row: Row, compiled: bool):
    return task_runner(row, compiled, partial=True)


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
