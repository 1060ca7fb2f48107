"""Table-driven parity harness: run an mlx_optim optimizer beside its PyTorch reference.

A :class:`Row` names a registered optimizer, its constructor keywords (MLX
spelling: ``learning_rate``) and a tolerance. The harness builds identical
float32 parameters of shapes (7,), (5, 6) and (2, 3, 4), feeds both sides a
gradient that depends on each side's *current* parameters and whose magnitude
changes over time (loud for the first steps, then quiet, with noise so signs
flip), and compares the parameters after every step.

The reference is, by default, ``pytorch_optimizer.load_optimizer(row.name)``
(which resolves adam, adamw, sgd, nadam, rmsprop, lbfgs to torch.optim). A row
may name another class (``ref=torch.optim.Adagrad``) or a factory
``ref(params, **kwargs)`` returning any object with ``step(closure=None)`` that
reads ``p.grad`` (NumPy transcriptions of references without a PyTorch class
are written that way).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

import mlx_optim

SHAPES = {"a": (7,), "b": (5, 6), "c": (2, 3, 4)}
LOUD_STEPS = 6


# our keywords the references do not have (dropped from the torch side)
MLX_ONLY = ("state_dtype", "ns_dtype")


@dataclasses.dataclass(frozen=True)
class Row:
    """One parity case."""

    name: str
    kwargs: dict = dataclasses.field(default_factory=dict)
    ref: Any = None  # None: pytorch_optimizer.load_optimizer(name); a class; or a factory(params, **kw)
    ref_kwargs: dict | None = None  # torch keyword overrides, merged over the converted kwargs
    atol: float = 1e-5
    rtol: float = 1e-4
    steps: int = 20
    note: str = ""  # required when atol/rtol are looser than the defaults: why
    id: str = ""
    compare: Callable | None = None  # compare(mlx_params_per_step, ref_params_per_step, row) for stats-only rows
    runner: Callable | None = None  # runner(row, compiled) -> (mlx_traj, ref_traj) for special calling conventions
    # Ill-conditioned rows (eigenbases, degenerate subspaces): the runner also returns the reference run in float64,
    # and a parameter that misses atol/rtol still passes within fp64_envelope times the float32 reference's own
    # distance from that float64 run (per tensor, largest over the run). 0: off. Requires a note.
    fp64_envelope: float = 0.0
    source_module: str = ""  # the rows module it comes from (set by all_rows)

    @property
    def label(self) -> str:
        return f"{self.name}-{self.id}" if self.id else self.name

    def torch_kwargs(self) -> dict:
        kw = {("lr" if k == "learning_rate" else k): v for k, v in self.kwargs.items() if k not in MLX_ONLY}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items()}
        kw.update(self.ref_kwargs or {})
        return kw


# ---------------------------------------------------------------------------- the problem
def initial_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


@functools.cache
def _problem(seed: int = 1, steps: int = 200):
    rng = np.random.default_rng(seed)
    target = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    noise = [{k: rng.normal(scale=0.5, size=s) for k, s in SHAPES.items()} for _ in range(steps)]
    return target, noise


def scale(t: int) -> float:
    """Gradient magnitude at step ``t``: loud start, then quiet and slowly varying."""
    return 3.0 if t < LOUD_STEPS else 0.03 * (1.0 + 0.5 * np.sin(t))


def loss_and_grads(params: dict[str, np.ndarray], t: int, dtype=np.float32) -> tuple[np.float32, dict[str, np.ndarray]]:
    """``s_t * sum(0.5 (p - target)^2 - 0.1 cos(3p) + noise_t * p)`` and its gradient, in float64 -> ``dtype``."""
    target, noise = _problem()
    s = scale(t)
    loss = 0.0
    grads = {}
    for k, p32 in params.items():
        p = p32.astype(np.float64)
        loss += s * np.sum(0.5 * (p - target[k]) ** 2 - 0.1 * np.cos(3 * p) + noise[t][k] * p)
        grads[k] = (s * ((p - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(dtype)
    return dtype(loss), grads


# ---------------------------------------------------------------------------- the two sides
def reference_class(row: Row):
    if row.ref is not None:
        return row.ref
    import pytorch_optimizer

    return pytorch_optimizer.load_optimizer(row.name)


def run_reference(row: Row) -> list[dict[str, np.ndarray]]:
    import torch

    init = initial_params()
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    opt = reference_class(row)(list(params.values()), **row.torch_kwargs())
    needs_loss = mlx_optim.load_optimizer(row.name).needs_loss
    traj = []
    for t in range(row.steps):
        loss, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        if needs_loss:
            opt.step(lambda loss=loss: torch.tensor(loss))
        else:
            opt.step()
        traj.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return traj


def mlx_stepper(row: Row, compiled: bool, init: dict[str, np.ndarray] | None = None, with_loss: bool = False):
    """``(opt, holder, step)``: the row's optimizer on MLX copies of ``init`` (default: :func:`initial_params`)
    in ``holder["params"]``, and ``step(grads)`` (``step(grads, loss)`` with ``with_loss``) updating them,
    under ``mx.compile`` with the parameters and the state captured when ``compiled``."""
    init = initial_params() if init is None else init
    holder = {"params": {k: mx.array(v) for k, v in init.items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])

    def step(grads, *loss):
        holder["params"] = opt.apply_gradients(grads, holder["params"], loss=loss[0] if with_loss else None)

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    return opt, holder, step


def run_mlx(row: Row, compiled: bool) -> list[dict[str, np.ndarray]]:
    opt, holder, step = mlx_stepper(row, compiled, with_loss=True)
    traj = []
    for t in range(row.steps):
        loss, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()}, mx.array(loss))
        mx.eval(holder, opt.state)
        traj.append({k: np.array(v) for k, v in holder["params"].items()})
    return traj


_REFERENCE_CACHE: dict[str, list] = {}


def reference_trajectory(row: Row) -> list[dict[str, np.ndarray]]:
    """The reference run, computed once per row and shared by the eager and compiled checks."""
    if row.label not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[row.label] = run_reference(row)
    return _REFERENCE_CACHE[row.label]


def assert_close_trajectories(mine, ref, row: Row, mode: str, ref64=None) -> None:
    """Every parameter within atol/rtol of ``ref`` after every step; with ``row.fp64_envelope`` and the float64
    reference run ``ref64``, a parameter may instead be within ``fp64_envelope`` times the float32 reference's own
    largest distance from ``ref64`` over the run (per tensor), plus atol."""
    spread: dict[str, float] = {}  # per tensor: the float32 reference's largest distance from its float64 run
    if ref64 is not None:
        for b, c in zip(ref, ref64):
            for k in b:
                spread[k] = max(spread.get(k, 0.0), float(np.max(np.abs(b[k] - c[k]))))
    for t, (a, b) in enumerate(zip(mine, ref)):
        for k in a:
            if not np.allclose(a[k], b[k], rtol=row.rtol, atol=row.atol):
                err = np.max(np.abs(a[k] - b[k]))
                if ref64 is not None and row.fp64_envelope:
                    err64 = float(np.max(np.abs(a[k] - ref64[t][k])))
                    if err64 <= row.fp64_envelope * spread[k] + row.atol:
                        continue
                    raise AssertionError(
                        f"{row.label} ({mode}): parameter {k!r} differs from the reference at step {t + 1}: "
                        f"max abs diff {err:.3g} > atol {row.atol:g} + rtol {row.rtol:g}, and from the float64 "
                        f"reference {err64:.3g} > {row.fp64_envelope:g} x the float32 reference's {spread[k]:.3g}"
                    )
                raise AssertionError(
                    f"{row.label} ({mode}): parameter {k!r} differs from the reference at step {t + 1}: "
                    f"max abs diff {err:.3g} > atol {row.atol:g} + rtol {row.rtol:g}"
                )
    assert len(mine) == len(ref) == row.steps


def check_row(row: Row, mode: str) -> None:
    compiled = mode == "compiled"
    ref64 = None
    if row.runner is not None:
        mine, ref, *rest = row.runner(row, compiled)
        ref64 = rest[0] if rest else None
    else:
        mine, ref = run_mlx(row, compiled), reference_trajectory(row)
    if row.compare is not None:
        row.compare(mine, ref, row)
    else:
        assert_close_trajectories(mine, ref, row, mode, ref64)


# ---------------------------------------------------------------------------- the table
def all_rows() -> list[Row]:
    """Every ``ROWS`` list in ``tests/parity/rows/*.py``."""
    from tests.parity import rows as pkg

    rows = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        rows.extend(dataclasses.replace(row, source_module=info.name) for row in module.ROWS)
    return rows


DEFAULT_ATOL, DEFAULT_RTOL = Row("x").atol, Row("x").rtol
