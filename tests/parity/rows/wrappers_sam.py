"""Parity rows for :mod:`mlx_optim.wrappers.sam`."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import SHAPES, Row, _problem, initial_params, loss_and_grads, scale
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs


# ---------------------------------------------------------------------------- the SAM runner
class Problem(nn.Module):
    """The harness's problem as an MLX module: ``s_t * sum(0.5 (p - target)^2 - 0.1 cos(3p) + noise_t * p)``."""

    def __init__(self):
        super().__init__()
        for k, v in initial_params().items():
            setattr(self, k, mx.array(v))

    def loss(self, s, noise):
        target, _ = _problem()
        total = mx.array(0.0, dtype=mx.float64)
        for k in SHAPES:
            p = getattr(self, k).astype(mx.float64)
            tk = mx.array(target[k], dtype=mx.float64)
            total = total + s * mx.sum(0.5 * mx.square(p - tk) - 0.1 * mx.cos(3 * p) + noise[k] * p)
        return total.astype(mx.float32)


def _batch(t: int):
    _, noise = _problem()
    return mx.array(scale(t), dtype=mx.float64), {k: mx.array(v, dtype=mx.float64) for k, v in noise[t].items()}


def _split_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """MLX row kwargs -> (torch inner kwargs, torch wrapper kwargs)."""
    kw = {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in kwargs.items()
        if k not in ("transparent", "state_dtype")
    }
    inner = _torch_inner_kwargs(kw.pop("learning_rate", None), kw.pop("optimizer_kwargs", None))
    kw.pop("base_optimizer", None)
    return inner, kw


class _Schedule:
    """A stand-in for pytorch_optimizer's ProportionScheduler: ``step()`` returns f(0), f(1), ..."""

    def __init__(self, f):
        self.f, self.i = f, 0

    def step(self):
        value = float(self.f(mx.array(self.i)))
        self.i += 1
        return value


def run_torch_sam(row: Row) -> list[dict[str, np.ndarray]]:
    import pytorch_optimizer as po

    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in initial_params().items()}
    plist = list(params.values())
    inner_kw, kw = _split_kwargs(row.kwargs)
    model = torch.nn.ParameterDict(params)
    name = row.name
    t_now = [0]

    def closure():
        loss, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t_now[0])
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        return torch.tensor(loss)

    base_cls = _torch_class(row.kwargs.get("base_optimizer", "sgd")) if name != "bsam" else None
    if name in ("sam", "asam"):
        if name == "asam":
            kw.setdefault("adaptive", True)
        opt = po.SAM(plist, base_cls, **kw, **inner_kw)
    elif name == "looksam":
        opt = po.LookSAM(plist, base_cls, **kw, **inner_kw)
    elif name == "friendlysam":
        opt = po.FriendlySAM(plist, base_cls, **kw, **inner_kw)
    elif name == "wsam":
        opt = po.WSAM(model, plist, base_cls, **kw, **inner_kw)
    elif name == "gsam":
        rho = kw.pop("rho_scheduler")
        sched = _Schedule(rho if callable(rho) else (lambda i, r=rho: r))
        base = base_cls(plist, **inner_kw)
        opt = po.GSAM(plist, base, torch.nn.Module(), sched, **kw)
    elif name == "bsam":  # its foreach path (the CPU default) crashes in 4.1.0: compare with the scalar path
        opt = po.BSAM(plist, **kw, **inner_kw, foreach=False)
    else:  # pragma: no cover
        raise ValueError(name)

    traj = []
    for t in range(row.steps):
        t_now[0] = t
        if name in ("sam", "asam", "looksam", "friendlysam", "bsam"):
            closure()  # bsam: its state is created only for parameters that already have a .grad
            opt.step(closure)
        elif name == "gsam":
            opt.step(lambda: (None, closure()))
            opt.update_rho_t()
        else:
            opt.step(closure)
        traj.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return traj


def run_mlx_sam(row: Row, compiled: bool) -> list[dict[str, np.ndarray]]:
    model = Problem()
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    lg = nn.value_and_grad(model, lambda m, s, noise: m.loss(s, noise))
    transparent = row.kwargs.get("transparent", False)

    if transparent:

        def step(s, noise):
            for _ in range(opt.num_phases):
                _, grads = lg(model, s, noise)
                opt.update(model, grads)

    else:

        def step(s, noise):
            opt.step_with(model, lg, s, noise)

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(row.steps):
        step(*_batch(t))
        mx.eval(model.parameters(), opt.state)
        traj.append({k: np.array(getattr(model, k)) for k in SHAPES})
    return traj


_SAM_REF_CACHE: dict[str, list] = {}


def sam_runner(row: Row, compiled: bool):
    if row.label not in _SAM_REF_CACHE:
        _SAM_REF_CACHE[row.label] = run_torch_sam(row)
    return run_mlx_sam(row, compiled), _SAM_REF_CACHE[row.label]


def _rho_schedule(step):
    return 0.1 * mx.power(0.9, step.astype(mx.float32))


SGD = {"base_optimizer": "sgd", "learning_rate": 0.1}


SGDM = {"base_optimizer": "sgd", "learning_rate": 0.05, "optimizer_kwargs": {"momentum": 0.9}}


ADAMW = {"base_optimizer": "adamw", "learning_rate": 1e-2, "optimizer_kwargs": {"weight_decay": 0.1}}


LOOKSAM_NOTE = (
    "LookSAM's reuse term rescales g_v to the size of g; here ||g_v|| / ||g|| ~ 0.007 (g_v is the cancellation "
    "residue g_s - proj), so 1-ulp differences in f32 reductions and in the f32 SAM scale become ~1e-5 relative "
    "differences in the gradient (measured: 4.5e-6 after step 2 in f32 and still 9e-7 with both sides in "
    "float64, where only the f32 scale differs) and accumulate with momentum to 1.2e-4 over 20 steps"
)


BSAM_NOTE = (
    "num_data=1e9 makes BSAM's Gaussian noise (std 1/(num_data*s) <= ~1e-7) negligible, so the trajectories "
    "can be compared although MLX and torch draw different noise; default tolerance"
)


ROWS = [
    # SAM
    Row("sam", dict(SGD), runner=sam_runner),
    Row("sam", {**SGD, "rho": 0.5, "use_gc": True}, runner=sam_runner, id="gc"),
    Row(
        "sam",
        {**ADAMW, "rho": 0.5, "adaptive": True, "use_gc": True, "perturb_eps": 1e-3},
        runner=sam_runner,
        id="adaptive-gc",
    ),
    Row("sam", {**SGDM, "rho": 0.2, "transparent": True}, runner=sam_runner, id="transparent"),
    # ASAM = SAM(adaptive=True)
    Row("asam", dict(SGD), runner=sam_runner),
    Row("asam", {**ADAMW, "rho": 0.5, "use_gc": True, "transparent": True}, runner=sam_runner, id="gc-transparent"),
    # GSAM: rho_scheduler constant or an MLX schedule (torch: a ProportionScheduler stand-in with the same values)
    Row("gsam", {**SGD, "rho_scheduler": 0.05}, runner=sam_runner),
    Row(
        "gsam",
        {**ADAMW, "rho_scheduler": _rho_schedule, "alpha": 0.2, "adaptive": True, "perturb_eps": 1e-6},
        runner=sam_runner,
        id="schedule-adaptive",
    ),
    Row("gsam", {**SGDM, "rho_scheduler": 0.3, "transparent": True}, runner=sam_runner, id="transparent"),
    # WSAM
    Row("wsam", dict(SGD), runner=sam_runner),
    Row(
        "wsam",
        {**ADAMW, "rho": 0.2, "gamma": 0.8, "adaptive": True, "decouple": False, "max_norm": 1.0},
        runner=sam_runner,
        id="coupled-adaptive-clip",
    ),
    Row("wsam", {**SGDM, "rho": 0.2, "gamma": 0.5, "max_norm": 0.5, "eps": 1e-6}, runner=sam_runner, id="clip"),
    Row("wsam", {**SGDM, "transparent": True}, runner=sam_runner, id="transparent"),
    # LookSAM (20 steps: full SAM steps at 1 and 11 with the default k=10)
    Row("looksam", dict(SGD), runner=sam_runner),
    Row(
        "looksam",
        {**ADAMW, "rho": 0.3, "k": 3, "alpha": 0.5, "adaptive": True, "use_gc": True, "perturb_eps": 1e-6},
        runner=sam_runner,
        id="k3-adaptive-gc",
    ),
    Row(
        "looksam",
        {**SGDM, "k": 4, "transparent": True},
        runner=sam_runner,
        id="transparent",
        atol=3e-4,
        note=LOOKSAM_NOTE,
    ),
    # FriendlySAM
    Row("friendlysam", dict(SGD), runner=sam_runner),
    Row(
        "friendlysam",
        {**ADAMW, "rho": 0.3, "sigma": 0.5, "lmbda": 0.6, "adaptive": True, "perturb_eps": 1e-6},
        runner=sam_runner,
        id="adaptive",
    ),
    Row("friendlysam", {**SGDM, "transparent": True}, runner=sam_runner, id="transparent"),
    # BSAM (standalone): near-zero noise so the trajectories are deterministic up to ~1e-7.
    Row("bsam", {"num_data": 1e9, "learning_rate": 0.5}, runner=sam_runner, note=BSAM_NOTE),
    Row(
        "bsam",
        {
            "num_data": 1e9,
            "learning_rate": 0.1,
            "betas": (0.8, 0.99),
            "weight_decay": 0.5,
            "rho": 0.2,
            "adaptive": True,
            "damping": 0.5,
        },
        runner=sam_runner,
        id="adaptive",
        note=BSAM_NOTE,
    ),
    Row(
        "bsam",
        {"num_data": 1e9, "learning_rate": 0.5, "transparent": True},
        runner=sam_runner,
        id="transparent",
        note=BSAM_NOTE,
    ),
]
