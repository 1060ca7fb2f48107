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
(``mx.compile(mx.value_and_grad(f))`` for dicts, ``compiled_value_and_grad`` for
the module); the optimizer itself is not compilable (``LBFGS.compilable`` is
False: its control flow reads loss values, as torch's does).
"""

from __future__ import annotations

import functools

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import torch

from mlx_optim.optimizers.lbfgs import LBFGS, compiled_value_and_grad
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
    fn = compiled_value_and_grad(model, lsq_mx) if compiled else nn.value_and_grad(model, lsq_mx)
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


ROWS = []
