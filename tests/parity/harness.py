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

The MLX side and the gradient programs live in the package (``mlx_optim.check.programs`` /
``mlx_optim.check.problems``, no PyTorch), so that the references' trajectories, stored in
``mlx_optim/data/goldens.npz``, can be replayed on any device by ``mlx-optim check``. A row with a special
calling convention carries a :class:`Portable` runner: the package program (and its options) for the MLX
side, and a ``reference(row)`` function here for the torch side. Any other ``runner`` callable still works but
makes the row non-portable (``scripts/gen_goldens.py`` lists it with the reason).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np

import mlx_optim
from mlx_optim.check import compare as check_compare
from mlx_optim.check import problems as check_problems
from mlx_optim.check import programs
from mlx_optim.check.problems import (  # noqa: F401  (re-exported for the rows)
    LOUD_STEPS,
    SHAPES,
    _problem,
    initial_params,
    loss_and_grads,
    scale,
)

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
    runner: Callable | None = None  # a Portable, or runner(row, compiled) -> (mlx_traj, ref_traj) (not portable)
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


@dataclasses.dataclass(frozen=True)
class Portable:
    """A row's special calling convention, split into a package program and a torch reference.

    ``program`` names the MLX side in ``mlx_optim.check.programs.PROGRAMS``; ``options`` are its JSON options (or
    ``options(row) -> dict``); ``reference(row)`` runs the torch side and returns its trajectory, or a
    :class:`Reference` (``extras``: arrays the MLX side needs too, e.g. the reference's random masks;
    ``trajectory64``: its float64 run, for :attr:`Row.fp64_envelope`); ``compare`` names a statistical comparison
    of ``mlx_optim.check.compare.COMPARES`` (the row's own ``compare`` then checks the reference side too). The
    reference runs once per row (cached).
    """

    program: str
    reference: Callable
    options: Any = dataclasses.field(default_factory=dict)
    compare: str | None = None

    def options_for(self, row: Row) -> dict:
        return dict(self.options(row) if callable(self.options) else self.options)

    def __call__(self, row: Row, compiled: bool):
        rec = reference_record(row)
        mine = programs.run(case_of(row), compiled, extras=rec.extras)
        return (mine, rec.trajectory) if rec.trajectory64 is None else (mine, rec.trajectory, rec.trajectory64)


@dataclasses.dataclass
class Reference:
    """A reference run: its trajectory, the arrays the MLX side needs too, and (optionally) its float64 run."""

    trajectory: list[dict[str, np.ndarray]]
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    trajectory64: list[dict[str, np.ndarray]] | None = None


# ---------------------------------------------------------------------------- the two sides
def reference_class(row: Row):
    if row.ref is not None:
        return row.ref
    import pytorch_optimizer

    return pytorch_optimizer.load_optimizer(row.name)


def torch_params(init: dict[str, np.ndarray]) -> dict:
    import torch

    return {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}


def run_reference(row: Row, problem=None) -> list[dict[str, np.ndarray]]:
    """The reference on ``problem`` (a ``mlx_optim.check.problems.Problem``; default the harness's), one
    ``step()`` per gradient (``step(closure)`` returning the loss for optimizers that need it)."""
    import torch

    problem = problem or check_problems.harness()
    params = torch_params(problem.init)
    opt = reference_class(row)(list(params.values()), **row.torch_kwargs())
    needs_loss = mlx_optim.load_optimizer(row.name).needs_loss
    traj = []
    for t in range(row.steps):
        loss, grads = problem.loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
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
    under ``mx.compile`` with the parameters and the state captured when ``compiled``. For runners that are not
    :class:`Portable` (their rows cannot be replayed by ``mlx-optim check``: prefer a package program)."""
    import mlx.core as mx

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


def case_of(row: Row) -> programs.Case:
    """The row as the package's MLX side runs it; raises ``TypeError`` for a runner that is not :class:`Portable`."""
    runner = row.runner
    if runner is None:
        program, options, compare = "standard", {}, None
    elif isinstance(runner, Portable):
        program, options, compare = runner.program, runner.options_for(row), runner.compare
    else:
        raise TypeError(f"{row.label}: its runner {runner!r} has no package-side MLX program (not Portable)")
    return programs.Case(row.label, row.name, row.kwargs, row.steps, row.atol, row.rtol, program, options, compare)


def run_mlx(row: Row, compiled: bool, **kw) -> list[dict[str, np.ndarray]]:
    """The MLX side of a standard or :class:`Portable` row (``mlx_optim.check.programs.run``)."""
    return programs.run(case_of(row), compiled, **kw)


_REFERENCE_CACHE: dict[str, Reference] = {}


def reference_record(row: Row) -> Reference:
    """The reference run, computed once per row and shared by the eager and compiled checks and by the drift check
    of the stored goldens."""
    if row.label not in _REFERENCE_CACHE:
        if isinstance(row.runner, Portable):
            out = row.runner.reference(row)
            if not isinstance(out, (Reference, list)):
                raise TypeError(f"{row.label}: a reference returns its trajectory (a list) or a Reference")
            _REFERENCE_CACHE[row.label] = out if isinstance(out, Reference) else Reference(out)
        else:
            _REFERENCE_CACHE[row.label] = Reference(run_reference(row))
    return _REFERENCE_CACHE[row.label]


def reference_trajectory(row: Row) -> list[dict[str, np.ndarray]]:
    """The reference run, computed once per row and shared by the eager and compiled checks."""
    return reference_record(row).trajectory


def stored_form(row: Row) -> Reference:
    """What ``mlx_optim/data/goldens.npz`` stores of the row's reference (statistics rows: a summary)."""
    rec = reference_record(row)
    return Reference(check_compare.summarize(case_of(row).compare, rec.trajectory), rec.extras, rec.trajectory64)


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


# ---------------------------------------------------------------------------- the stored goldens
def golden_entry(row: Row) -> dict:
    """The row's index entry in ``mlx_optim/data/goldens.npz`` (raises ``NotPortable`` / ``TypeError`` when the
    row cannot be replayed from the package: keywords without a JSON form, a runner without a package program)."""
    from mlx_optim.check import encode

    case = case_of(row)
    kwargs = encode.encode(row.kwargs)
    if encode.encode(encode.decode(kwargs)) != kwargs:
        raise encode.NotPortable(f"{row.label}: its keywords do not survive a JSON round trip")
    options = case.options
    if json_roundtrip(options) != options:
        raise encode.NotPortable(f"{row.label}: program options {options!r} are not plain JSON")
    if (row.compare is None) != (case.compare is None):
        raise TypeError(f"{row.label}: a statistical row needs Portable(compare=...) and Row(compare=...) both")
    return {
        "label": row.label,
        "name": row.name,
        "id": row.id,
        "kwargs": kwargs,
        "steps": row.steps,
        "atol": row.atol,
        "rtol": row.rtol,
        "program": case.program,
        "options": options,
        "compare": case.compare,
        "fp64_envelope": row.fp64_envelope,
        "float64": programs.kwargs_use_float64(row.kwargs) or programs.kwargs_use_float64(options),
    }


def json_roundtrip(value):
    import json

    return json.loads(json.dumps(value))


GOLDEN_RTOL = {4: 2.0**-20, 8: 2.0**-45}
"""The drift check's tolerance, by itemsize: a regenerated reference value may differ from the stored one by this
fraction of the largest magnitude in its array at that step (float32: 2**-20, 8 ulps of the largest entry;
float64: 2**-45, 128 ulps), i.e. float rounding. Measured on this project's machines: 652 of 654 rows regenerate
bit for bit with 1 or 2 torch threads, SaRA's rank-penalty rows (a thread-dependent torch SVD) within 1.2e-7 on
values of magnitude ~2. Rows with ``fp64_envelope`` (ill-conditioned, CPU-dependent float32 results) allow each
float32 tensor its stored distance from the float64 run. Extras (random masks) must be equal.

The references run on MKL, whose kernels depend on the CPU's instruction set: regenerated with
``MKL_ENABLE_INSTRUCTIONS=SSE4_2`` instead of the AVX-512 kernels of the machine that wrote the file, 389 of 654 rows
differ, most by 1e-7 to 1e-6 of the array's largest entry, a few ill-conditioned ones more (shampoo-fixed 3.7e-5,
lbfgs-rosenbrock 1.6e-5). So the file is written, and the drift check run, on the CI's CPUs; on another kind of CPU
regenerate it first (``scripts/gen_goldens.py``)."""


@functools.cache
def stored_goldens():
    from mlx_optim.check import goldens

    return goldens.load()


# The stored trajectory is the reference run on the machine that wrote goldens.npz; the pinned torch picks its MKL
# kernels by CPU, which moves some references by up to 0.37 of their row's tolerance (shampoo-fixed: 3.7e-5, MKL
# with SSE4.2 kernels vs AVX-512; most rows by 1e-7 to 1e-6 of the array's max). So a drift passes within half the
# row's own tolerance: more than that is a change of the reference or of the gradient program, not of the CPU.
GOLDEN_ROW_FRACTION = 0.5


def _drift(
    label: str,
    traj: list[dict],
    stored: list[dict],
    spread: dict[str, float] | None = None,
    row: Row | None = None,
) -> list[str]:
    """``traj`` against ``stored`` within :data:`GOLDEN_RTOL`, or :data:`GOLDEN_ROW_FRACTION` of ``row``'s
    tolerance, or (per tensor) within ``spread``."""
    if len(traj) != len(stored):
        return [f"{label}: {len(traj)} reference steps, {len(stored)} stored"]
    for t, (now, then) in enumerate(zip(traj, stored)):
        if list(now) != list(then):
            return [f"{label} step {t + 1}: records {list(now)}, stored {list(then)}"]
        for k, v in now.items():
            a, b = np.asarray(v), np.asarray(then[k])
            if a.shape != b.shape or a.dtype != b.dtype:
                return [f"{label} step {t + 1} {k!r}: {a.dtype}{a.shape} now, {b.dtype}{b.shape} stored"]
            x, y = a.astype(np.float64), b.astype(np.float64)
            tol = GOLDEN_RTOL.get(a.itemsize, 0.0) * (float(np.max(np.abs(y))) if y.size else 0.0)
            tol = max(tol, (spread or {}).get(k, 0.0))
            if row is not None:
                tol = np.maximum(tol, GOLDEN_ROW_FRACTION * (row.atol + row.rtol * np.abs(y)))
            bad = ~((x == y) | (np.abs(x - y) <= tol))
            if np.any(bad):
                i = tuple(int(j) for j in np.unravel_index(int(np.argmax(bad)), bad.shape)) if bad.ndim else ()
                return [f"{label} step {t + 1} {k!r}{list(i)}: {float(x[i])!r} now, {float(y[i])!r} stored"]
    return []


def golden_drift(row: Row) -> list[str]:
    """How the row's stored golden differs from the pinned reference run now (empty: it does not)."""
    gold = stored_goldens()
    stored = gold.rows.get(row.label)
    if stored is None:
        return [f"{row.label} is missing from mlx_optim/data/goldens.npz: run scripts/gen_goldens.py"]
    entry = json_roundtrip(golden_entry(row))
    kept = {k: v for k, v in stored.entry.items() if k not in ("leaves", "extras", "leaves64")}
    if kept != entry:
        diff = sorted(k for k in {*entry, *kept} if entry.get(k) != kept.get(k))
        return [f"{row.label}: the row changed ({', '.join(diff)}) since goldens.npz was written: regenerate it"]
    rec = stored_form(row)
    spread = None
    if row.fp64_envelope and stored.trajectory64 is not None:  # ill-conditioned: the float32 run is only defined to
        spread = {}  # within its own distance from the float64 run (CPU-dependent BLAS/LAPACK kernels)
        for b, c in zip(stored.trajectory, stored.trajectory64):
            for k in b:
                spread[k] = max(spread.get(k, 0.0), float(np.max(np.abs(np.asarray(b[k], np.float64) - c[k]))))
    problems = _drift(row.label, rec.trajectory, stored.trajectory, spread, row)
    if (rec.trajectory64 is None) != (stored.trajectory64 is None):
        problems.append(f"{row.label}: a float64 reference run now {rec.trajectory64 is not None}, stored not")
    elif rec.trajectory64 is not None:
        problems += _drift(f"{row.label} (float64 run)", rec.trajectory64, stored.trajectory64, row=row)
    extras = rec.extras
    if set(extras) != set(stored.extras) or any(not np.array_equal(extras[k], stored.extras[k]) for k in extras):
        problems.append(f"{row.label}: the reference's extras ({sorted(extras)}) differ from the stored ones")
    return problems
