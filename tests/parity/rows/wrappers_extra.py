"""Parity rows for PCGrad / PPCGrad, the Grokfast filters, TRAC and KerasOptions' AGC / non-finite options.

Single-gradient wrappers (``gradfilterma``, ``gradfilterema``, ``trac``, ``kerasoptions``) use the standard
harness with a reference factory around the same torch optimizer: ``pytorch_optimizer.gradfilter_ma`` /
``gradfilter_ema`` called before the torch optimizer's ``step`` (as their docstrings show),
``pytorch_optimizer.TRAC``, and the Keras 3 transcription of ``tests/parity/rows/wrappers.py`` extended with
pytorch_optimizer's ``agc``.

PCGrad and PPCGrad take one gradient per task, so their rows carry :func:`task_runner`: ``NUM_TASKS`` task
losses on the harness's parameters, ``s_t * sum(0.5 (p - target_i)^2 - 0.1 cos(3p) + noise_t * p)`` with a
different (far apart, so the task gradients conflict) target per task, whose gradients are computed in float64
and rounded to float32 for both sides. The MLX side calls ``opt.apply_gradients([g_1, ..., g_T], params)``
(eager, or the whole step compiled). The torch side runs ``pytorch_optimizer.PCGrad.pc_backward`` on losses
``sum(p * g_i)`` (whose gradients are exactly ``g_i``) and ``step``, with its ``random.shuffle`` replaced by the
task orders MLX draws from the same key (``pcgrad_orders``), so the comparison is exact rather than
statistical. ``PPCGrad`` is compared with a torch transcription of the Keras seed's ``PPCGrad`` (order
independent). Rows with ``partial=True`` leave parameter ``c`` out of task 1 (``p.grad is None`` in torch),
which exercises the reference's non-shared merge (summed, not averaged).
"""

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
from tests.parity.rows.wrappers import TorchKerasOptions, _torch_class, _torch_inner_kwargs

NUM_TASKS = 3

# ---------------------------------------------------------------------------- single-gradient references


def _module(params) -> torch.nn.Module:
    module = torch.nn.Module()
    for i, p in enumerate(params):
        module.register_parameter(f"p{i}", p)
    return module


class TorchGradFilter:
    """``grads = gradfilter_xx(model, grads=grads, **kwargs)`` after backward, then ``optimizer.step()``."""

    def __init__(self, params, filter_fn, optimizer, lr=None, optimizer_kwargs=None, **kwargs):
        params = list(params)
        self.module = _module(params)
        self.base = _torch_class(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
        self.filter_fn, self.kwargs, self.grads = filter_fn, kwargs, None

    def step(self, closure=None):
        self.grads = self.filter_fn(self.module, grads=self.grads, **self.kwargs)
        self.base.step()


def torch_gradfilter_ma(params, **kwargs):
    from pytorch_optimizer.optimizer.grokfast import gradfilter_ma

    return TorchGradFilter(params, gradfilter_ma, **kwargs)


def torch_gradfilter_ema(params, **kwargs):
    from pytorch_optimizer.optimizer.grokfast import gradfilter_ema

    return TorchGradFilter(params, gradfilter_ema, **kwargs)


def torch_trac(params, optimizer, lr=None, optimizer_kwargs=None, **kwargs):
    import pytorch_optimizer

    inner = _torch_class(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
    return pytorch_optimizer.TRAC(inner, **kwargs)


class TorchKerasOptionsAGC(TorchKerasOptions):
    """The Keras transcription plus pytorch_optimizer's ``agc`` before the Keras clipping, and the skip of a
    call whose gradients are not all finite (Keras' ``LossScaleOptimizer``)."""

    def __init__(self, params, *args, agc_clipping_value=None, agc_eps=1e-3, skip_nonfinite=None, **kwargs):
        super().__init__(params, *args, **kwargs)
        self.agc_clipping_value, self.agc_eps = agc_clipping_value, agc_eps
        self.skip = self.scale is not None if skip_nonfinite is None else skip_nonfinite

    def _update(self, grads):
        from pytorch_optimizer.optimizer.agc import agc

        if self.agc_clipping_value is not None:
            grads = [agc(p.detach(), g, self.agc_eps, self.agc_clipping_value) for p, g in zip(self.params, grads)]
        super()._update(grads)

    @torch.no_grad()
    def step(self, closure=None):
        if self.skip and not all(bool(torch.isfinite(p.grad).all()) for p in self.params):
            return
        super().step(closure)


def trac_runner(row: Row, compiled: bool):
    """The standard harness loop on both sides, plus TRAC's scale ``s`` compared as an extra "parameter".

    With the default ``s_prev=1e-8`` the scale stays ~1e-7 over 20 steps, so the parameters move by less than
    one float32 ulp and comparing them alone would not test TRAC; the scale (through ``h``, ``sigma``,
    ``variance`` and the erfi approximation) is compared as well, divided by ``s_prev`` (so that the default
    atol does not swallow it: ``s / s_prev`` is ~10-30 here) with the default tolerance.
    """
    import torch as _torch

    from tests.parity.harness import loss_and_grads

    init = initial_params()
    holder = {"params": {k: mx.array(v) for k, v in init.items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])
    s_prev = row.kwargs.get("s_prev", 1e-8)

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    mine = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        mine.append({**{k: np.array(v) for k, v in holder["params"].items()}, "s": np.array(opt.state["s"]) / s_prev})
    if row.label not in _TRAC_REF_CACHE:
        params = {k: _torch.nn.Parameter(_torch.from_numpy(v.copy())) for k, v in init.items()}
        ref_opt = torch_trac(list(params.values()), **row.torch_kwargs())
        ref = []
        for t in range(row.steps):
            _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
            for k, p in params.items():
                p.grad = _torch.from_numpy(grads[k].copy())
            ref_opt.step()
            s_ref = ref_opt.state["trac"]["s"].numpy().copy().reshape(())
            ref.append({**{k: p.detach().numpy().copy() for k, p in params.items()}, "s": s_ref / s_prev})
        _TRAC_REF_CACHE[row.label] = ref
    return mine, _TRAC_REF_CACHE[row.label]


_TRAC_REF_CACHE: dict[str, list] = {}


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


SGD = {"optimizer": "sgd", "learning_rate": 0.1}
SGDM = {"optimizer": "sgd", "learning_rate": 0.05, "optimizer_kwargs": {"momentum": 0.9}}
ADAMW = {"optimizer": "adamw", "learning_rate": 1e-2, "optimizer_kwargs": {"weight_decay": 0.1}}

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
    # Grokfast MA (105 steps so the default window of 100 fills and the filter acts).
    Row("gradfilterma", dict(SGD), ref=torch_gradfilter_ma, steps=105),
    Row(
        "gradfilterma",
        {**ADAMW, "window_size": 4, "lamb": 2.0, "filter_type": "sum"},
        ref=torch_gradfilter_ma,
        id="sum-w4",
    ),
    Row("gradfilterma", {**SGDM, "window_size": 5, "warmup": False}, ref=torch_gradfilter_ma, id="no-warmup"),
    # Grokfast EMA
    Row("gradfilterema", dict(SGD), ref=torch_gradfilter_ema),
    Row("gradfilterema", {**ADAMW, "alpha": 0.8, "lamb": 0.5}, ref=torch_gradfilter_ema, id="adamw"),
    Row("gradfilterema", {**SGDM, "alpha": 0.3, "lamb": 1.0}, ref=torch_gradfilter_ema, id="alpha-low"),
    # TRAC
    Row("trac", dict(ADAMW), runner=trac_runner),
    Row(
        "trac",
        {**SGDM, "betas": (0.9, 0.99), "num_coefs": 64, "s_prev": 1e-3, "eps": 1e-6},
        runner=trac_runner,
        id="sgd-2betas",
    ),
    # KerasOptions: adaptive gradient clipping and the non-finite skip (the harness's gradients are finite,
    # so the skip must leave these trajectories alone; tests/test_wrappers_extra.py checks the skip itself).
    Row("kerasoptions", {**SGD, "agc_clipping_value": 0.05}, ref=TorchKerasOptionsAGC, id="agc"),
    Row(
        "kerasoptions",
        {
            **ADAMW,
            "agc_clipping_value": 0.1,
            "agc_eps": 0.5,
            "clipvalue": 0.5,
            "loss_scale_factor": 64.0,
            "gradient_accumulation_steps": 2,
            "use_ema": True,
        },
        ref=TorchKerasOptionsAGC,
        id="agc-scale-skip-accumulate",
    ),
]
