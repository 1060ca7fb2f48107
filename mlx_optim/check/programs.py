"""The MLX side of every parity row: run a registered optimizer on a row's gradient program, return its trajectory.

A *program* is a function ``program(case, compiled, extras=None, hook=None) -> trajectory`` where the trajectory
is a list (one entry per step) of ``{name: np.ndarray}``, the quantities the row compares (usually the parameters
after the step). ``compiled`` runs the whole step under ``mx.compile`` (parameters and optimizer state captured).
The parity tests (``tests/parity``) run these functions against the PyTorch references; ``mlx-optim check`` runs
them against the stored reference trajectories (:mod:`mlx_optim.check.goldens`). :data:`PROGRAMS` names them:

* ``standard``: one gradient per step from a NumPy problem (:mod:`mlx_optim.check.problems`), with options for
  the rows that need more (see :func:`standard`);
* ``sam``: the SAM family's ``step_with`` on the harness problem as an MLX module;
* ``lbfgs``: L-BFGS's ``step_with`` on Rosenbrock, a least-squares module or a softmax regression;
* ``hessian_inject`` / ``hessian_e2e`` / ``hessian_stats``: AdaHessian / Sophia with a given curvature estimate,
  end to end, and the estimators' statistics;
* ``tasks``: PCGrad / PPCGrad on per-task gradients;
* ``rose_bf16`` / ``gravity_noise``: statistics of stochastic rounding and of Gravity's random initial velocity.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from mlx_optim.autodiff import LossAndGrad
from mlx_optim.check import problems
from mlx_optim.check.problems import SHAPES, _problem, initial_params, loss_and_grads, scale

__all__ = ["PROGRAMS", "Case", "run"]

Trajectory = list[dict[str, np.ndarray]]


@dataclasses.dataclass
class Case:
    """One parity row as the MLX side sees it.

    Args:
        label: the row's unique label (``name`` or ``name-id``).
        name: the registered optimizer name.
        kwargs: the optimizer's keywords (live values: tuples, dtypes, functions).
        steps: the number of steps (entries of the trajectory).
        atol: absolute tolerance of the comparison.
        rtol: relative tolerance of the comparison.
        program: a key of :data:`PROGRAMS`.
        options: the program's options (JSON data).
        compare: ``None`` (trajectories compared with ``atol``/``rtol``) or a key of
            :data:`mlx_optim.check.compare.COMPARES`.
    """

    label: str
    name: str
    kwargs: dict
    steps: int
    atol: float = 1e-5
    rtol: float = 1e-4
    program: str = "standard"
    options: dict = dataclasses.field(default_factory=dict)
    compare: str | None = None


def _np(tree: dict) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree.items()}


def _f64_stream():
    """Where float64 math runs: MLX has no float64 on the GPU, so the CPU stream there (a no-op on the CPU)."""
    return mx.stream(mx.cpu) if mx.default_device() != mx.cpu else _null()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------- standard
def _warmup_decay(lr: float):
    """``lr * min(step / 3, 1) * 0.9**step``: starts at 0, warms up over 3 steps, then decays."""
    return lambda step: lr * mx.minimum(step / 3.0, 1.0) * mx.power(0.9, step)


SCHEDULES = {"warmup_decay": _warmup_decay}


def max_logits(t: int) -> dict[str, np.ndarray]:
    """MuonClip rows: per-head maximum attention logits at step ``t``, around the threshold 100 (some heads clip)."""
    heads = {"attn5": 5, "attn2": 2, "attn7": 7}
    return {
        name: (100.0 + 60.0 * np.sin(t + np.arange(h) * 1.3 + 0.1 * i)).astype(np.float32)
        for i, (name, h) in enumerate(heads.items())
    }


def _master(p: mx.array, state: dict) -> mx.array:
    """The effective float32 master weight (the bf16 parameter plus its error-correction bits, if any)."""
    from mlx_optim.optimizers.flashadamw import reconstruct_fp32_param

    return reconstruct_fp32_param(p, state["error_bits"]) if "error_bits" in state else p.astype(mx.float32)


def standard(case: Case, compiled: bool, extras: dict | None = None, hook: Callable | None = None) -> Trajectory:
    """One gradient per step from ``problems.build(options["problem"])``, fed to ``opt.apply_gradients``.

    Options (all optional): ``problem`` (a :func:`mlx_optim.check.problems.build` spec; default the harness);
    ``groups`` (parameter groups, :mod:`mlx_optim.check.encode`d, passed as the optimizer's ``groups``);
    ``with_loss`` (default True: pass the problem's loss to the step); ``param_dtype`` (``"bfloat16"``: the
    parameters, and the gradients computed from their float32 values, in bf16); ``schedule`` (a key of
    :data:`SCHEDULES`, replacing the learning rate); ``step_kwargs`` (``"max_logits"``: MuonClip's
    ``attention_max_logits``); ``via_model`` (step through ``opt.update(model, ...)``); ``script`` (a list of
    ``"step"`` / ``"eval"`` / ``"train"``: schedule-free swaps, recorded after every action); ``inject``
    (a state key copied from ``extras["<key>/<leaf>"][t]`` before step ``t`` for the leaves present); ``record``
    (``"params"``; ``"master"``: FlashAdamW's float32 master weights; ``"state:<key>"``: a per-leaf state;
    ``"trac_s"``: the parameters plus TRAC's scale over ``s_prev``); ``state_scalars`` (names of global state
    scalars recorded with the parameters, as float64). ``hook(t, opt, holder)`` runs before every step (the parity
    tests read random draws there).
    """
    o = case.options
    problem = problems.build(o.get("problem"), case.steps)
    with_loss = o.get("with_loss", True)
    low = getattr(mx, o["param_dtype"]) if o.get("param_dtype") else None
    kwargs = dict(case.kwargs)
    if o.get("groups"):
        from mlx_optim.check.encode import decode

        kwargs["groups"] = decode(o["groups"])
    if o.get("schedule"):
        kwargs["learning_rate"] = SCHEDULES[o["schedule"]](kwargs["learning_rate"])
    leaves = [(k, mx.array(v) if low is None else mx.array(v).astype(low)) for k, v in problem.init.items()]
    holder = {"params": tree_unflatten(leaves) if problem.nested else dict(leaves)}
    opt = mlx_optim.load_optimizer(case.name)(**kwargs)
    opt.init(holder["params"])
    logits_kw = o.get("step_kwargs") == "max_logits"
    model = None
    if o.get("via_model"):
        model = nn.Module()
        for k, v in holder["params"].items():
            setattr(model, k, v)

    def step(grads, loss, extra):
        kw = {"attention_max_logits": extra} if logits_kw else {}
        if model is not None:
            opt.update(model, grads, **kw)
            holder["params"] = {k: model[k] for k in holder["params"]}
        else:
            holder["params"] = opt.apply_gradients(grads, holder["params"], loss=loss, **kw)

    if compiled:
        state = [holder, opt.state] + ([model] if model is not None else [])
        step = mx.compile(step, inputs=state, outputs=state)

    record = o.get("record", "params")
    s_prev = case.kwargs.get("s_prev", 1e-8)

    def snapshot() -> dict[str, np.ndarray]:
        flat = dict(tree_flatten(holder["params"]))
        if record == "master":
            return {k: np.array(_master(v, opt.state[k])) for k, v in flat.items()}
        if record.startswith("state:"):
            return {k: np.array(opt.state[k][record[6:]]) for k in flat}
        out = _np(flat)
        if record == "trac_s":
            out["s"] = np.array(opt.state["s"]) / s_prev
        for name in o.get("state_scalars") or ():
            out[name] = np.array(float(opt.state[name].item()))
        return out

    inject = o.get("inject")
    traj, t = [], 0
    for action in o.get("script") or ["step"] * case.steps:
        if action != "step":
            holder["params"] = getattr(opt, action)(holder["params"])
            mx.eval(holder, opt.state)
            traj.append(snapshot())
            continue
        if hook is not None:
            hook(t, opt, holder)
        if inject:
            for k in dict(tree_flatten(holder["params"])):
                key = f"{inject}/{k}"
                if extras is not None and key in extras:
                    opt.state[k][inject] = mx.array(extras[key][t])
        flat = {k: np.array(v if low is None else v.astype(mx.float32)) for k, v in tree_flatten(holder["params"])}
        loss, grads = problem.loss_and_grads(flat, t)
        g = [(k, mx.array(v) if low is None else mx.array(v).astype(low)) for k, v in grads.items()]
        g = tree_unflatten(g) if problem.nested else dict(g)
        extra = {n: mx.array(v) for n, v in max_logits(t).items()} if logits_kw else None
        step(g, mx.array(loss) if with_loss and loss is not None else None, extra)
        mx.eval(holder, opt.state)
        traj.append(snapshot())
        t += 1
    return traj


# ---------------------------------------------------------------------------------------------- sam
class SamProblem(nn.Module):
    """The harness's problem as an MLX module: ``s_t * sum(0.5 (p - target)^2 - 0.1 cos(3p) + noise_t * p)``,
    computed in float64 (on the CPU stream) and rounded to float32, as the harness's NumPy gradient is."""

    def __init__(self):
        super().__init__()
        for k, v in initial_params().items():
            setattr(self, k, mx.array(v))

    def loss(self, s, noise):
        target, _ = _problem()
        with _f64_stream():
            total = mx.array(0.0, dtype=mx.float64)
            for k in SHAPES:
                p = getattr(self, k).astype(mx.float64)
                tk = mx.array(target[k], dtype=mx.float64)
                total = total + s * mx.sum(0.5 * mx.square(p - tk) - 0.1 * mx.cos(3 * p) + noise[k] * p)
            return total.astype(mx.float32)


def _sam_batch(t: int):
    _, noise = _problem()
    with _f64_stream():
        return mx.array(scale(t), dtype=mx.float64), {k: mx.array(v, dtype=mx.float64) for k, v in noise[t].items()}


def sam(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """SAM-family rows: ``opt.step_with(model, loss_and_grad, s, noise)`` (or, with the ``transparent`` keyword,
    ``num_phases`` ordinary ``update`` calls per step on the same batch)."""
    model = SamProblem()
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    lg = nn.value_and_grad(model, lambda m, s, noise: m.loss(s, noise))

    if case.kwargs.get("transparent", False):

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
    for t in range(case.steps):
        step(*_sam_batch(t))
        mx.eval(model.parameters(), opt.state)
        traj.append({k: np.array(getattr(model, k)) for k in SHAPES})
    return traj


# ---------------------------------------------------------------------------------------------- lbfgs
LBFGS_X0 = [-1.2, 1.0, -0.5, 0.8, 1.5, -0.3]
LBFGS_L2 = 1e-3


@functools.cache
def lbfgs_data(kind: str):
    """L-BFGS problems' data: ``"lsq"`` (x, y, init of an ``nn.Linear(5, 3)``) or ``"softmax"`` (x, labels, init)."""
    rng = np.random.default_rng(7)
    if kind == "lsq":
        x = rng.normal(size=(32, 5))
        y = x @ rng.normal(size=(5, 3)) + 0.5 + 0.3 * rng.normal(size=(32, 3))
        w0, b0 = rng.normal(scale=0.4, size=(3, 5)), rng.normal(scale=0.4, size=(3,))
        return x, y, {"weight": w0, "bias": b0}
    x = rng.normal(size=(64, 5))
    labels = np.argmax(x @ rng.normal(size=(5, 3)) + rng.normal(scale=1.5, size=(64, 3)), axis=1)
    w0, b0 = rng.normal(scale=0.3, size=(5, 3)), rng.normal(scale=0.3, size=(3,))
    return x, labels, {"W": w0, "b": b0}


def _rosenbrock(p):
    x = p["x"]
    return mx.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _softmax(p, x, labels):
    logits = x @ p["W"] + p["b"]
    picked = mx.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return mx.mean(mx.logsumexp(logits, axis=1) - picked) + 0.5 * LBFGS_L2 * mx.sum(p["W"] ** 2)


def _lsq(model, x, y):
    return mx.mean((model(x) - y) ** 2)


def lbfgs_record(params: dict, loss, state: dict) -> dict[str, np.ndarray]:
    """One L-BFGS step's record: the parameters (float64), the returned loss and the counters."""
    rec = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    rec["loss"] = np.array(float(loss))
    rec["func_evals"] = np.array(float(state["func_evals"]))
    rec["n_iter"] = np.array(float(state["n_iter"]))
    return rec


def lbfgs(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """``LBFGS.step_with`` on ``options["problem"]`` (``rosenbrock``, ``lsq``: a module, ``softmax``: a dict) in
    ``options["dtype"]``; "compiled" compiles the loss-and-gradient function (the optimizer is not compilable)."""
    problem, dtype = case.options["problem"], getattr(mx, case.options.get("dtype", "float32"))
    if problem == "rosenbrock":
        target = {"x": mx.array(np.array(LBFGS_X0), dtype)}
        fn, args, read = mx.value_and_grad(_rosenbrock), (), (lambda: target)
        fn = mx.compile(fn) if compiled else fn
    elif problem == "softmax":
        x, labels, init = lbfgs_data("softmax")
        target = {k: mx.array(v, dtype) for k, v in init.items()}
        fn, args, read = mx.value_and_grad(_softmax), (mx.array(x, dtype), mx.array(labels)), (lambda: target)
        fn = mx.compile(fn) if compiled else fn
    else:
        x, y, init = lbfgs_data("lsq")
        target = nn.Linear(5, 3)
        target.update({k: mx.array(v, dtype) for k, v in init.items()})
        fn = mlx_optim.value_and_grad(target, _lsq, compile=True) if compiled else nn.value_and_grad(target, _lsq)
        args, read = (mx.array(x, dtype), mx.array(y, dtype)), (lambda: dict(target.parameters()))
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    traj = []
    for _ in range(case.steps):
        loss = opt.step_with(target, fn, *args)
        traj.append(lbfgs_record(read(), loss, {k: opt.state[k].item() for k in ("func_evals", "n_iter")}))
    return traj


# ---------------------------------------------------------------------------------------------- hessian
GNB_BATCH = 8  # B of the injected sampled-label gradients


def update_period(name: str, kwargs: dict) -> int:
    """The optimizer's curvature refresh period (its keyword, or its default)."""
    if "update_period" in kwargs:
        return kwargs["update_period"]
    return inspect.signature(mlx_optim.load_optimizer(name)).parameters["update_period"].default


def hessian_estimate(params: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    """A given diagonal estimate for step ``t``: the true diagonal ``s_t (1 + 0.9 cos 3p)`` times a random
    factor in [0.5, 1.5), negated for about a fifth of the entries (SophiaH's clamp), never near 0."""
    rng = np.random.default_rng(100 + t)
    s = scale(t)
    out = {}
    for k, p in params.items():
        factor = rng.uniform(0.5, 1.5, size=p.shape) * np.where(rng.uniform(size=p.shape) < 0.2, -1.0, 1.0)
        out[k] = (s * (1 + 0.9 * np.cos(3 * p.astype(np.float64))) * factor).astype(np.float32)
    return out


def sampled_gradient(t: int) -> dict[str, np.ndarray]:
    """A stand-in for SophiaG's sampled-label gradient ``g_s`` at step ``t``."""
    rng = np.random.default_rng(200 + t)
    return {k: (scale(t) * rng.normal(size=s)).astype(np.float32) for k, s in SHAPES.items()}


def hessian_inject(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """On refresh steps (``t % update_period == 0``) the step gets ``hessian=``: :func:`hessian_estimate` of the
    current parameters, or for Sophia-G (``options["gnb"]``) ``GNB_BATCH * g_s**2``; plain steps otherwise."""
    period = update_period(case.name, case.kwargs)
    gnb = case.options.get("gnb", False)
    holder = {"params": {k: mx.array(v) for k, v in initial_params().items()}}
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    opt.init(holder["params"])

    def plain(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    def refreshing(grads, hessian):
        holder["params"] = opt.apply_gradients(grads, holder["params"], hessian=hessian)

    if compiled:
        state = [holder, opt.state]
        plain = mx.compile(plain, inputs=state, outputs=state)
        refreshing = mx.compile(refreshing, inputs=state, outputs=state)
    traj = []
    for t in range(case.steps):
        cur = _np(holder["params"])
        _, grads = loss_and_grads(cur, t)
        grads = {k: mx.array(g) for k, g in grads.items()}
        if t % period == 0:
            if gnb:
                h = {k: GNB_BATCH * np.square(g) for k, g in sampled_gradient(t).items()}
            else:
                h = hessian_estimate(cur, t)
            refreshing(grads, {k: mx.array(v) for k, v in h.items()})
        else:
            plain(grads)
        mx.eval(holder, opt.state)
        traj.append(_np(holder["params"]))
    return traj


class Params(nn.Module):
    """A module holding the given arrays as parameters."""

    def __init__(self, init: dict[str, np.ndarray]):
        super().__init__()
        for k, v in init.items():
            setattr(self, k, mx.array(v))


def _hessian_loss(model: Params, s, target, noise):
    total = mx.array(0.0)
    for k in SHAPES:
        p = getattr(model, k)
        total = total + s * mx.sum(0.5 * mx.square(p - target[k]) - 0.1 * mx.cos(3 * p) + noise[k] * p)
    return total


class StubGNB(LossAndGrad):
    """``gnb`` returns ``B * g_s**2`` for the given deterministic ``g_s`` (passed as a keyword)."""

    def gnb(self, model, key, *args, g_s, **kwargs):
        loss, grads = self(model, *args, **kwargs)
        return loss, grads, {k: GNB_BATCH * mx.square(v) for k, v in g_s.items()}


def hessian_e2e(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """The whole ``step_with`` path on the harness loss in MLX (HVPs by ``mx.jvp``; the loss is separable, so
    Hutchinson's estimate is the exact diagonal for Rademacher probes); Sophia-G (``options["gnb"]``) gets the
    deterministic ``g_s`` of :func:`sampled_gradient` through :class:`StubGNB`."""
    gnb = case.options.get("gnb", False)
    target, noise = _problem()
    model = Params(initial_params())
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    lg = (StubGNB if gnb else LossAndGrad)(model, _hessian_loss)
    mx_target = {k: mx.array(v.astype(np.float32)) for k, v in target.items()}

    def step(s, nz, g_s):
        kw = {"g_s": g_s} if gnb else {}
        return opt.step_with(model, lg, s, mx_target, nz, **kw)

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(case.steps):
        nz = {k: mx.array(v.astype(np.float32)) for k, v in noise[t].items()}
        g_s = {k: mx.array(v) for k, v in sampled_gradient(t).items()}
        step(mx.array(scale(t), mx.float32), nz, g_s)
        mx.eval(model.parameters(), opt.state)
        traj.append(_np(dict(tree_flatten(model.parameters()))))
    return traj


STATS_N = 1500
_A_RNG = np.random.default_rng(7)
_M = _A_RNG.normal(size=(10, 10))
QUAD_A = ((_M + _M.T) / 2).astype(np.float32)  # indefinite, dense: couples the two leaves
QUAD_INIT = {"u": _A_RNG.normal(size=(4,)).astype(np.float32), "w": _A_RNG.normal(size=(2, 3)).astype(np.float32)}
GNB_X = _A_RNG.normal(size=(2, 8, 4)).astype(np.float32)  # B = 16 positions, 4 features
GNB_INIT = {"W": _A_RNG.normal(size=(4, 5)).astype(np.float32), "b": _A_RNG.normal(size=(5,)).astype(np.float32)}


def _mlx_quad(model, *_):
    v = mx.concatenate([model.u, model.w.reshape(-1)])
    return 0.5 * v @ mx.array(QUAD_A) @ v


def _mlx_logits(model, x):
    return x @ model.W + model.b


def _mlx_ce(model, x):
    return mx.mean(mx.logsumexp(_mlx_logits(model, x), axis=-1))  # any loss: only the GNB estimate is used


def hessian_stats(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """``STATS_N`` curvature estimates at fixed parameters: Hutchinson on the quadratic ``0.5 v^T A v``
    (AdaHessian through its ``estimate``, SophiaH through ``step_with`` with learning rate 0 and ``beta2=0``),
    or Sophia-G's GNB estimate on a softmax regression (``options["gnb"]``). One entry: ``{leaf: samples}``."""
    gnb = case.options.get("gnb", False)
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    model = Params(GNB_INIT if gnb else QUAD_INIT)
    batch = (mx.array(GNB_X),) if gnb else ()
    lg = mlx_optim.value_and_grad(model, _mlx_ce if gnb else _mlx_quad, logits_fn=_mlx_logits if gnb else None)

    if case.options.get("estimate"):  # AdaHessian: state holds squares, draw through the optimizer's estimator

        def draw():
            keys = mx.random.split(opt.globals["key"])
            opt.globals["key"] = keys[0]
            return opt.estimate(lg, model, keys[1], *batch)[2]

        state = [opt.state]
    else:  # learning_rate=0, beta2=0, update_period=1: the curvature state is this step's estimate
        slot = "hessian" if gnb else "hessian_moment"

        def draw():
            opt.step_with(model, lg, *batch)
            return {k: opt.state[k][slot] for k in model.trainable_parameters()}

        state = [model.state, opt.state]
    if compiled:
        draw = mx.compile(draw, inputs=state, outputs=state)
    samples = []
    for _ in range(STATS_N):
        est = draw()
        mx.eval(est, opt.state)
        samples.append(_np(est))
    return [{k: np.stack([s[k] for s in samples]) for k in samples[0]}]


# ---------------------------------------------------------------------------------------------- tasks
NUM_TASKS = 3


@functools.cache
def task_targets() -> list[dict[str, np.ndarray]]:
    """One far-apart target per task (so the task gradients conflict)."""
    rng = np.random.default_rng(11)
    return [{k: 2.0 * rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(NUM_TASKS)]


def task_grads(params: dict[str, np.ndarray], t: int, partial: bool) -> list[dict[str, np.ndarray]]:
    """Per-task gradients (float64 -> float32); with ``partial`` task 1 has no gradient for ``c``."""
    _, noise = _problem()
    s = scale(t)
    out = []
    for i, target in enumerate(task_targets()):
        g = {}
        for k, p32 in params.items():
            if partial and i == 1 and k == "c":
                continue
            p = p32.astype(np.float64)
            g[k] = (s * ((p - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(np.float32)
        out.append(g)
    return out


def tasks(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """PCGrad / PPCGrad: ``opt.apply_gradients([g_1, ..., g_T], params)`` with :func:`task_grads`."""
    partial = case.options.get("partial", False)
    holder = {"params": {k: mx.array(v) for k, v in initial_params().items()}}
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    opt.init(holder["params"])

    def step(per_task):
        holder["params"] = opt.apply_gradients(per_task, holder["params"])

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(case.steps):
        grads = task_grads(_np(holder["params"]), t, partial)
        step([{k: mx.array(g) for k, g in task.items()} for task in grads])
        mx.eval(holder, opt.state)
        traj.append(_np(holder["params"]))
    return traj


# ---------------------------------------------------------------------------------------------- statistics
ROSE_SHAPE = (64, 256)


def rose_bf16_grad() -> np.ndarray:
    """Gradient columns alternating +1 / -1 (zero row means, every row range 2)."""
    return np.where(np.arange(ROSE_SHAPE[1]) % 2 == 0, 1.0, -1.0)[None, :].repeat(ROSE_SHAPE[0], 0).astype(np.float32)


def rose_means(x: np.ndarray) -> dict[str, np.ndarray]:
    """The means of the +1 columns (``down``) and of the -1 columns (``up``)."""
    return {"down": np.float64(x[:, 0::2].mean()), "up": np.float64(x[:, 1::2].mean())}


def rose_bf16(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """ROSE on bf16 parameters at 1.5 with steps far below half a bf16 spacing: with stochastic rounding the
    column-group means (:func:`rose_means`) follow the exact drift in expectation."""
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    holder = {"p": mx.full(ROSE_SHAPE, 1.5, mx.bfloat16)}
    g = {"p": mx.array(rose_bf16_grad()).astype(mx.bfloat16)}
    opt.init(holder)

    def step(g):
        holder["p"] = opt.apply_gradients(g, holder)["p"]

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for _ in range(case.steps):
        step(g)
        mx.eval(holder, opt.state)
        traj.append(rose_means(np.array(holder["p"].astype(mx.float32))))
    return traj


GRAVITY_SHAPE = (400, 250)


def velocity_stats(v, sigma) -> np.ndarray:
    """Mean, standard deviation and the fractions within 1 and 2 sigma of ``v / sigma``."""
    v = np.asarray(v, np.float64).ravel() / sigma
    return np.array([v.mean(), v.std(), np.mean(np.abs(v) < 1), np.mean(np.abs(v) < 2)])


def gravity_noise(case: Case, compiled: bool, extras=None, hook=None) -> Trajectory:
    """Statistics of Gravity's initial velocity ``N(0, (alpha / lr)^2)`` on a 100k-element parameter."""
    lr, alpha = case.kwargs["learning_rate"], case.kwargs["alpha"]
    opt = mlx_optim.load_optimizer(case.name)(**case.kwargs)
    opt.init({"w": mx.zeros(GRAVITY_SHAPE)})
    return [{"stats": velocity_stats(np.array(opt.state["w"]["v"]), alpha / lr)}] * case.steps


PROGRAMS: dict[str, Callable[..., Trajectory]] = {
    "standard": standard,
    "sam": sam,
    "lbfgs": lbfgs,
    "hessian_inject": hessian_inject,
    "hessian_e2e": hessian_e2e,
    "hessian_stats": hessian_stats,
    "tasks": tasks,
    "rose_bf16": rose_bf16,
    "gravity_noise": gravity_noise,
}


def run(case: Case, compiled: bool, extras: dict | None = None, hook: Callable | None = None) -> Trajectory:
    """The MLX trajectory of ``case`` (eager, or with the step under ``mx.compile``)."""
    return PROGRAMS[case.program](case, compiled, extras=extras, hook=hook)


def kwargs_use_float64(value: Any) -> bool:
    """Whether keywords or options name float64 (MLX runs float64 on the CPU only)."""
    if value is mx.float64 or value == "float64":
        return True
    if isinstance(value, dict):
        return any(kwargs_use_float64(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(kwargs_use_float64(v) for v in value)
    return False
