"""Parity rows for L-BFGS (torch.optim.LBFGS), with their own runner.

The standard harness feeds one gradient per step; L-BFGS evaluates the loss many
times per step, so these rows carry a ``runner`` that runs whole problems with
both ``torch.optim.LBFGS`` (closure) and ``mlx_optim.LBFGS`` (``step_with``) and
compares, after every outer step, the parameters, the returned loss and torch's
``func_evals`` / ``n_iter`` counters (which must agree exactly: they record every
branch the line search and the termination tests took).

Problems: the 6-D Rosenbrock function from x0 = [-1.2, 1, -0.5, 0.8, 1.5, -0.3]
(a dict of parameters), a least-squares fit of an ``nn.Linear(5, 3)`` (a module,
weight matrix and bias) and a softmax regression with a weight matrix, a bias and
a small L2 term (a dict). ``dtype="float64"`` runs both sides in float64 (the
optimizer then works in float64, as torch does in the parameters' dtype).

The "compiled" mode compiles the loss-and-gradient function with ``mx.compile``
(``mx.compile(mx.value_and_grad(f))`` for dicts, ``mlx_optim.value_and_grad(..., compile=True)`` for
the module); the optimizer itself is not compilable (``LBFGS.compilable`` is
False: its control flow reads loss values, as torch's does).
"""

from __future__ import annotations

import functools

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import torch

import mlx_optim
from mlx_optim.optimizers.lbfgs import LBFGS
from tests.parity.harness import Row

X0 = [-1.2, 1.0, -0.5, 0.8, 1.5, -0.3]


_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


_MX_DTYPES = {"float32": mx.float32, "float64": mx.float64}


# ---------------------------------------------------------------------------- problems
@functools.cache
def _data(kind: str):
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


def rosenbrock_mx(p):
    x = p["x"]
    return mx.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def rosenbrock_torch(p):
    x = p["x"]
    return torch.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


L2 = 1e-3


def softmax_mx(p, x, labels):
    logits = x @ p["W"] + p["b"]
    picked = mx.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return mx.mean(mx.logsumexp(logits, axis=1) - picked) + 0.5 * L2 * mx.sum(p["W"] ** 2)


def softmax_torch(p, x, labels):
    logits = x @ p["W"] + p["b"]
    picked = logits.gather(1, labels[:, None])[:, 0]
    return torch.mean(torch.logsumexp(logits, dim=1) - picked) + 0.5 * L2 * torch.sum(p["W"] ** 2)


def lsq_mx(model, x, y):
    return mx.mean((model(x) - y) ** 2)


def _mlx_side(problem: str, dtype: str, compiled: bool):
    """Returns (target, loss_and_grad_fn, args, read_params)."""
    md = _MX_DTYPES[dtype]
    if problem == "rosenbrock":
        params = {"x": mx.array(np.array(X0), md)}
        fn = mx.value_and_grad(rosenbrock_mx)
        return params, (mx.compile(fn) if compiled else fn), (), lambda: params
    if problem == "softmax":
        x, labels, init = _data("softmax")
        params = {k: mx.array(v, md) for k, v in init.items()}
        fn = mx.value_and_grad(softmax_mx)
        args = (mx.array(x, md), mx.array(labels))
        return params, (mx.compile(fn) if compiled else fn), args, lambda: params
    x, y, init = _data("lsq")
    model = nn.Linear(5, 3)
    model.update({k: mx.array(v, md) for k, v in init.items()})
    fn = mlx_optim.value_and_grad(model, lsq_mx, compile=True) if compiled else nn.value_and_grad(model, lsq_mx)
    return model, fn, (mx.array(x, md), mx.array(y, md)), lambda: dict(model.parameters())


def _torch_side(problem: str, dtype: str):
    """Returns (named params, closure factory(opt) -> closure)."""
    td = _TORCH_DTYPES[dtype]
    if problem == "rosenbrock":
        params = {"x": torch.nn.Parameter(torch.tensor(X0, dtype=td))}
        return params, lambda: rosenbrock_torch(params)
    if problem == "softmax":
        x, labels, init = _data("softmax")
        params = {k: torch.nn.Parameter(torch.tensor(v, dtype=td)) for k, v in init.items()}
        xt, lt = torch.tensor(x, dtype=td), torch.tensor(labels)
        return params, lambda: softmax_torch(params, xt, lt)
    x, y, init = _data("lsq")
    params = {k: torch.nn.Parameter(torch.tensor(v, dtype=td)) for k, v in init.items()}
    xt, yt = torch.tensor(x, dtype=td), torch.tensor(y, dtype=td)
    return params, lambda: torch.mean((xt @ params["weight"].T + params["bias"] - yt) ** 2)


def _record(params: dict, loss, state: dict) -> dict:
    rec = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    rec["loss"] = np.array(float(loss))
    rec["func_evals"] = np.array(float(state["func_evals"]))
    rec["n_iter"] = np.array(float(state["n_iter"]))
    return rec


def run_torch(row: Row, problem: str, dtype: str) -> list[dict]:
    params, loss_fn = _torch_side(problem, dtype)
    opt = torch.optim.LBFGS(list(params.values()), **row.torch_kwargs())

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    traj = []
    for _ in range(row.steps):
        loss = opt.step(closure)
        state = opt.state[next(iter(params.values()))]
        traj.append(_record({k: p.detach().numpy() for k, p in params.items()}, loss.detach(), state))
    return traj


def run_mlx(row: Row, problem: str, dtype: str, compiled: bool) -> list[dict]:
    target, fn, args, read = _mlx_side(problem, dtype, compiled)
    opt = LBFGS(**row.kwargs)
    traj = []
    for _ in range(row.steps):
        loss = opt.step_with(target, fn, *args)
        traj.append(_record(read(), loss, {k: opt.state[k].item() for k in ("func_evals", "n_iter")}))
    return traj


_CACHE: dict = {}


def runner(problem: str, dtype: str = "float32"):
    def run(row: Row, compiled: bool):
        key = (row.label, problem, dtype)
        if key not in _CACHE:
            _CACHE[key] = run_torch(row, problem, dtype)
        return run_mlx(row, problem, dtype, compiled), _CACHE[key]

    return run


WOLFE = {"line_search_fn": "strong_wolfe"}


F64_NOTE = (
    "float64 on both sides (polynomial losses, so MLX's float64 CPU math is exact): checks the algorithm branch for "
    "branch with a tolerance tighter than the default; measured max diff {measured}."
)


CHAOS_NOTE = (
    "Rosenbrock in float32: L-BFGS amplifies the ulp-level differences between MLX's and torch's reductions (dot "
    "products, sums) by ~x10-1000 per outer step (same growth with torch-computed gradients fed to our optimizer, so it "
    "is the optimizer's own float32 arithmetic), so only the first {steps} steps are compared (measured {measured}); "
    "the float64 rows check the same paths over 10 steps. Default tolerance."
)


ROWS = [
    # float64: the algorithm, branch for branch (counters func_evals / n_iter compared too)
    Row(
        "lbfgs",
        {"learning_rate": 1},
        runner=runner("rosenbrock", "float64"),
        steps=3,
        id="rosenbrock-f64",
        note="Fixed-step L-BFGS (lr=1) on Rosenbrock is chaotic even in float64 (1e-16 differences grow x1000 per "
        "20 iterations: 2e-4 at step 4), so 3 steps (60 iterations, measured 3.7e-8) at the default tolerance.",
    ),
    Row(
        "lbfgs",
        {"learning_rate": 1, **WOLFE},
        runner=runner("rosenbrock", "float64"),
        steps=10,
        atol=1e-8,
        rtol=1e-7,
        id="rosenbrock-wolfe-f64",
        note=F64_NOTE.format(measured="3.3e-11"),
    ),
    Row(
        "lbfgs",
        {"learning_rate": 0.25, "max_iter": 30, "history_size": 10, "tolerance_change": 1e-7},
        runner=runner("rosenbrock", "float64"),
        steps=10,
        atol=1e-8,
        rtol=1e-7,
        id="rosenbrock-opts-f64",
        note=F64_NOTE.format(measured="9.4e-13"),
    ),
    Row(
        "lbfgs",
        {
            "learning_rate": 0.75,
            **WOLFE,
            "history_size": 4,
            "max_iter": 5,
            "max_eval": 9,
            "tolerance_grad": 1e-4,
            "tolerance_change": 1e-7,
        },
        runner=runner("rosenbrock", "float64"),
        steps=10,
        id="rosenbrock-wolfe-opts-f64",
        note="float64; the differences grow from 1e-16 to 3.4e-6 over the 10 steps (Rosenbrock amplifies them), "
        "default tolerance.",
    ),
    # history eviction (history_size 2) and a line search cut short by max_eval
    Row(
        "lbfgs",
        {"learning_rate": 1, **WOLFE, "max_iter": 4, "max_eval": 6, "history_size": 2},
        runner=runner("rosenbrock", "float64"),
        steps=10,
        atol=1e-8,
        rtol=1e-7,
        id="rosenbrock-wolfe-budget-f64",
        note=F64_NOTE.format(measured="2.3e-10"),
    ),
    # max_iter=1 -> max_eval=1 -> the line search gets max_ls=0 (torch's bracket [0, t] branch)
    Row(
        "lbfgs",
        {"learning_rate": 1, **WOLFE, "max_iter": 1},
        runner=runner("rosenbrock", "float64"),
        steps=10,
        atol=1e-8,
        rtol=1e-7,
        id="rosenbrock-wolfe-maxls0-f64",
        note=F64_NOTE.format(measured="1.1e-13"),
    ),
    Row(
        "lbfgs",
        {"learning_rate": 0.5, "history_size": 3, "max_iter": 7, "tolerance_grad": 1e-5, "tolerance_change": 1e-6},
        runner=runner("lsq", "float64"),
        steps=10,
        atol=1e-8,
        rtol=1e-7,
        id="lsq-module-opts-f64",
        note=F64_NOTE.format(measured="8.9e-16"),
    ),
    # float32 (the default), module and dict targets
    Row("lbfgs", {"learning_rate": 1}, runner=runner("lsq"), steps=10, id="lsq-module"),
    Row("lbfgs", {"learning_rate": 1, **WOLFE}, runner=runner("lsq"), steps=10, id="lsq-module-wolfe"),
    Row(
        "lbfgs",
        {
            "learning_rate": 0.8,
            **WOLFE,
            "history_size": 4,
            "max_iter": 5,
            "max_eval": 9,
            "tolerance_grad": 1e-4,
            "tolerance_change": 1e-7,
        },
        runner=runner("lsq"),
        steps=10,
        id="lsq-module-wolfe-opts",
    ),
    Row(
        "lbfgs",
        {"learning_rate": 1, "tolerance_change": 1e-5, "tolerance_grad": 1e-4},
        runner=runner("softmax"),
        steps=10,
        id="softmax-dict",
    ),
    Row(
        "lbfgs",
        {"learning_rate": 1, **WOLFE, "tolerance_change": 1e-5, "tolerance_grad": 1e-4},
        runner=runner("softmax"),
        steps=10,
        id="softmax-dict-wolfe",
    ),
    Row(
        "lbfgs",
        {"learning_rate": 0.5, "max_iter": 4, "history_size": 5},
        runner=runner("rosenbrock"),
        steps=6,
        id="rosenbrock",
        note=CHAOS_NOTE.format(steps=6, measured="3.1e-5 at step 2; 9e-4 at step 8"),
    ),
    Row(
        "lbfgs",
        {"learning_rate": 1, **WOLFE, "max_iter": 4, "history_size": 5},
        runner=runner("rosenbrock"),
        steps=3,
        id="rosenbrock-wolfe",
        note=CHAOS_NOTE.format(steps=3, measured="3.3e-7; 1.5e-4 at step 5"),
    ),
]
