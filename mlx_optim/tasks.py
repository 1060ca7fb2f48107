"""Built-in training tasks for ``mlx-optim compare`` (all data generated in code; nothing is downloaded).

A :class:`Task` builds, from a seed, a model (an ``nn.Module``), a loss function ``loss_fn(model, *batch)`` and
a stream of batches; :func:`train` runs one optimizer on it and returns the loss curve, timing and state size.

* ``rosenbrock`` / ``rastrigin``: the 2-D test functions of pytorch_optimizer's visualizations, started at
  the same points ((-2, 2) and (-2, 3.5)); the model is a single 2-vector ``xy`` whose trajectory is recorded.
* ``spirals``: a 2-64-64-2 tanh MLP classifying two interleaved spirals (the former ``python -m
  mlx_optim.demo``).
* ``tiny-lm``: a 2-layer causal transformer (d=64) predicting the next character of a generated corpus of
  short sentences.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

import mlx_optim

__all__ = ["TASKS", "Task", "get_task", "make_optimizer", "train", "parse_optimizer_spec"]


# ----------------------------------------------------------------------------- 2-D test functions
def _coords(xy: mx.array) -> tuple[mx.array, mx.array]:
    # Without indexing (a gather), so forward-over-reverse Hessian-vector products work (SophiaH, AdaHessian).
    return mx.sum(xy * mx.array([1.0, 0.0])), mx.sum(xy * mx.array([0.0, 1.0]))


def rosenbrock(xy: mx.array) -> mx.array:
    x, y = _coords(xy)
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def rastrigin(xy: mx.array, a: float = 10.0) -> mx.array:
    return a * 2 + mx.sum(xy**2 - a * mx.cos(2 * math.pi * xy))


class Point(nn.Module):
    """A model that is one 2-vector: the position on the test function."""

    def __init__(self, start: tuple[float, float]):
        super().__init__()
        self.xy = mx.array(start, mx.float32)


# ----------------------------------------------------------------------------- spirals
def spirals(n: int = 512, seed: int = 0) -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.25, 1.0, size=n) * 3 * math.pi
    label = rng.integers(0, 2, size=n)
    angle = t + label * math.pi
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3 * math.pi)
    x += rng.normal(scale=0.02, size=x.shape)
    return mx.array(x.astype(np.float32)), mx.array(label.astype(np.int32))


class MLP(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.layers = [nn.Linear(2, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 2)]

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = mx.tanh(layer(x))
        return self.layers[-1](x)


def classification_loss(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


# ----------------------------------------------------------------------------- tiny-lm
_SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher", "our cook"]
_VERBS = ["sees", "likes", "finds", "paints", "follows", "feeds", "hears"]
_OBJECTS = ["the red ball", "a green tree", "the river", "some bread", "the moon", "a tall house", "the sea"]
_ENDS = [".", " today.", " again.", " at night.", " in the park."]


def char_corpus(n_sentences: int = 2000, seed: int = 0) -> str:
    """Generated sentences ``subject verb object end`` (a small grammar, so there is structure to learn)."""
    rng = np.random.default_rng(seed)
    parts = [_SUBJECTS, _VERBS, _OBJECTS, _ENDS]
    return " ".join(
        " ".join(p[rng.integers(len(p))] for p in parts[:3]) + parts[3][rng.integers(4)] for _ in range(n_sentences)
    )


class TinyLM(nn.Module):
    """A small causal transformer: token + position embeddings, pre-norm blocks, tied-free output head."""

    def __init__(self, vocab: int, dims: int = 64, heads: int = 4, layers: int = 2, context: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dims)
        self.pos = nn.Embedding(context, dims)
        self.blocks = [
            nn.TransformerEncoderLayer(dims, heads, mlp_dims=4 * dims, norm_first=True) for _ in range(layers)
        ]
        self.norm = nn.LayerNorm(dims)
        self.head = nn.Linear(dims, vocab)

    def __call__(self, x):
        n = x.shape[1]
        h = self.embed(x) + self.pos(mx.arange(n))
        mask = nn.MultiHeadAttention.create_additive_causal_mask(n)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.norm(h))


def lm_loss(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


# ----------------------------------------------------------------------------- the task table
@dataclass
class Setup:
    model: nn.Module
    loss_fn: Callable
    batches: Iterator[tuple]
    start: tuple[float, float] | None = None  # 2-D functions: the start point


@dataclass
class Task:
    name: str
    description: str
    default_steps: int
    build: Callable[[int], Setup]
    function: Callable[[mx.array], mx.array] | None = None  # 2-D test functions: f(xy)
    minimum: tuple[float, float] | None = None
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None  # plot window ((x0, x1), (y0, y1))
    extras: dict = field(default_factory=dict)

    @property
    def is_function(self) -> bool:
        return self.function is not None


def _function_setup(f: Callable, start: tuple[float, float]) -> Callable[[int], Setup]:
    def build(seed: int) -> Setup:
        def forever():
            while True:
                yield ()

        return Setup(Point(start), lambda model: f(model.xy), forever(), start)

    return build


def _spirals_setup(seed: int, batch: int = 128) -> Setup:
    x, y = spirals()
    mx.random.seed(seed)
    model = MLP()

    def batches():
        rng = np.random.default_rng(seed + 1)
        while True:
            idx = mx.array(rng.integers(0, x.shape[0], size=batch))
            yield x[idx], y[idx]

    return Setup(model, classification_loss, batches())


def _tiny_lm_setup(seed: int, batch: int = 16, context: int = 32) -> Setup:
    text = char_corpus()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int32)
    mx.random.seed(seed)
    model = TinyLM(len(chars), context=context)

    def batches():
        rng = np.random.default_rng(seed + 1)
        while True:
            starts = rng.integers(0, len(ids) - context - 1, size=batch)
            window = np.stack([ids[s : s + context + 1] for s in starts])
            yield mx.array(window[:, :-1]), mx.array(window[:, 1:])

    return Setup(model, lm_loss, batches())


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "spirals",
            "2-64-64-2 tanh MLP classifying two interleaved spirals (512 generated points, batch 128)",
            300,
            _spirals_setup,
        ),
        Task(
            "rosenbrock",
            "Rosenbrock function (1-x)^2 + 100 (y-x^2)^2 from (-2, 2); minimum 0 at (1, 1)",
            300,
            _function_setup(rosenbrock, (-2.0, 2.0)),
            function=rosenbrock,
            minimum=(1.0, 1.0),
            bounds=((-2.0, 2.0), (-1.0, 3.0)),
        ),
        Task(
            "rastrigin",
            "Rastrigin function 20 + sum(x^2 - 10 cos(2 pi x)) from (-2, 3.5); minimum 0 at (0, 0)",
            300,
            _function_setup(rastrigin, (-2.0, 3.5)),
            function=rastrigin,
            minimum=(0.0, 0.0),
            bounds=((-4.5, 4.5), (-4.5, 4.5)),
        ),
        Task(
            "tiny-lm",
            "2-layer causal transformer (d=64, 4 heads, context 32) on a generated character corpus, batch 16",
            200,
            _tiny_lm_setup,
        ),
    ]
}
DEFAULT_TASK = "spirals"


def get_task(name: str) -> Task:
    from mlx_optim.registry import lookup

    return lookup(TASKS, name, "task")


# ----------------------------------------------------------------------------- optimizers
DEFAULT_WRAPPED = "adamw"


def parse_optimizer_spec(spec: str) -> tuple[str, str | None]:
    """``"adamw"`` -> ``("adamw", None)``; ``"lookahead:adamw"`` -> ``("lookahead", "adamw")``.

    A wrapper (Lookahead, the SAM family, ...) given without ``:inner`` wraps ``adamw``. Wrappers nest:
    ``"sam:lookahead:sgd"`` -> ``("sam", "lookahead:sgd")`` is SAM around Lookahead around SGD (see
    :func:`optimizer_chain` for the nestings that cannot work). Unknown names raise ``ValueError`` listing the
    closest registered names.
    """
    chain = optimizer_chain(spec)
    return chain[0], (":".join(chain[1:]) or None)


def optimizer_chain(spec: str) -> list[str]:
    """The names of ``spec`` from the outermost to the innermost optimizer, ``adamw`` appended after a bare wrapper.

    ``"sam:lookahead:sgd"`` -> ``["sam", "lookahead", "sgd"]``, ``"sam:lookahead"`` -> ``["sam", "lookahead",
    "adamw"]``. Raises ``ValueError`` for an unknown name, for a name that is not a wrapper followed by another
    (``"adam:sgd"``), and for a multi-evaluation optimizer (the SAM family, BSAM: ``step_with`` evaluates the
    gradient several times per step) nested where its evaluations cannot happen: it must be the outermost
    optimizer or directly inside the outermost Lookahead / Scout, whose ``step_with`` hands the step to it.
    """
    parts = [p.strip() for p in spec.strip().lower().split(":")]
    if any(not p for p in parts):
        raise ValueError(f"optimizer {spec!r} has an empty name; write name or wrapper:inner (lookahead:adamw)")
    classes = [mlx_optim.load_optimizer(p) for p in parts]
    for name, cls in zip(parts[:-1], classes[:-1]):
        if not is_wrapper(cls):
            raise ValueError(f"{name!r} is not a wrapper: '{spec}' cannot wrap another optimizer")
    if is_wrapper(classes[-1]):
        parts.append(DEFAULT_WRAPPED)
        classes.append(mlx_optim.load_optimizer(DEFAULT_WRAPPED))
    for i, cls in enumerate(classes[1:], 1):
        if _is_multi_evaluation(cls) and not (i == 1 and _hands_step_to_inner(classes[0])):
            raise ValueError(
                f"'{spec}': {parts[i]} evaluates the gradient several times per step, which {parts[i - 1]} cannot "
                "run for it here; put it outermost, or directly inside an outermost lookahead / scout"
            )
    return parts


def _is_multi_evaluation(cls: type) -> bool:
    from mlx_optim.wrappers import Phased

    return issubclass(cls, Phased)


def _hands_step_to_inner(cls: type) -> bool:
    from mlx_optim.wrappers.lookahead import Lookahead, Scout

    return issubclass(cls, (Lookahead, Scout))


def is_wrapper(cls: type) -> bool:
    try:
        from mlx_optim.wrappers import Wrapper
    except ImportError:  # pragma: no cover - wrappers not present
        return False
    return issubclass(cls, Wrapper)


def default_learning_rate(spec: str) -> float:
    """The constructor's default ``learning_rate`` (of the innermost optimizer for wrappers), else 1e-3."""
    import inspect

    cls = mlx_optim.load_optimizer(optimizer_chain(spec)[-1])
    p = inspect.signature(cls).parameters.get("learning_rate")
    if p is not None and isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
        return float(p.default)
    return 1e-3


def make_optimizer(
    spec: str, learning_rate: float, *, transparent: bool | None = None, **kwargs: Any
) -> mlx_optim.Optimizer:
    """Build ``spec`` (``name``, ``wrapper:inner``, ``wrapper:wrapper:inner``) with ``learning_rate``.

    The learning rate is the innermost optimizer's; ``kwargs`` go to the outermost one. ``transparent``, when
    given, is passed to every multi-evaluation optimizer of the chain (the SAM family: ``True`` runs one phase per
    ``update`` call, see :class:`mlx_optim.wrappers.Phased`).
    """
    chain = optimizer_chain(spec)

    def build(name: str, *args: Any, **kw: Any):
        cls = mlx_optim.load_optimizer(name)
        if transparent is not None and _is_multi_evaluation(cls):
            kw["transparent"] = transparent
        return cls(*args, **kw)

    if len(chain) == 1:
        return build(chain[0], learning_rate=learning_rate, **kwargs)
    opt = build(chain[-1], learning_rate=learning_rate)
    for depth in range(len(chain) - 2, -1, -1):
        opt = build(chain[depth], opt, **(kwargs if depth == 0 else {}))
    return opt


def compilable(opt: Any) -> bool:
    """Whether ``opt`` (and every optimizer it wraps) can run inside ``mx.compile`` (L-BFGS cannot)."""
    while opt is not None:
        if not getattr(opt, "compilable", True):
            return False
        opt = getattr(opt, "inner", None)
    return True


def state_bytes(opt) -> int:
    return sum(v.nbytes for _, v in tree_flatten(opt.state) if isinstance(v, mx.array))


# ----------------------------------------------------------------------------- training
def train(
    task: Task,
    spec: str,
    learning_rate: float,
    steps: int,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train ``spec`` on ``task`` for ``steps`` steps; returns losses, timing, state size (and trajectory).

    The step is ``opt.step_with(model, loss_and_grad, *batch)`` (one calling convention for every optimizer:
    SAM re-evaluates, AdaHessian/Sophia take Hessian-vector products), compiled with ``mx.compile`` unless
    the optimizer is not compilable (L-BFGS), in which case the loss-and-gradient function is compiled.
    Every optimizer starts from the same weights and sees the same batches. A loss that becomes non-finite
    stops the run early (the remaining steps count as ``inf``).
    """
    setup = task.build(seed)
    model = setup.model
    opt = make_optimizer(spec, learning_rate)
    can_compile = compilable(opt)
    lg = mlx_optim.value_and_grad(model, setup.loss_fn, compile=not can_compile)
    opt.init(model.trainable_parameters())  # the state's structure is fixed before tracing: no retrace
    state = [model.state, opt.state]

    def step(*batch):
        return opt.step_with(model, lg, *batch)

    if can_compile:
        step = mx.compile(step, inputs=state, outputs=state)
    n_params = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    losses: list[float] = []
    trajectory: list[list[float]] = [list(setup.start)] if setup.start else []
    start, timed_from, ran = time.perf_counter(), 0, 0
    for i in range(steps):
        if i == 1:  # time from the second step: the first one traces and compiles (timed only in a 1-step run)
            start, timed_from = time.perf_counter(), 1
        ran = i + 1
        loss = step(*next(setup.batches))
        mx.eval(state, loss)
        value = loss.item()
        losses.append(value)
        if setup.start:
            trajectory.append([float(v) for v in np.array(model.xy)])
        if on_step is not None:
            on_step(i, value)
        if not math.isfinite(value):
            losses.extend([math.inf] * (steps - i - 1))
            if on_step is not None:
                on_step(steps - 1, value)
            break
    elapsed = time.perf_counter() - start
    tail = losses[-max(1, steps // 10) :]
    out = {
        "optimizer": spec,
        "learning_rate": learning_rate,
        "steps": steps,
        "first": losses[0],
        "final": float(np.mean(tail)) if all(math.isfinite(v) for v in tail) else math.inf,
        "best": min(losses),
        "ms_per_step": 1000 * elapsed / (ran - timed_from),
        "timed_steps": ran - timed_from,  # from the second step on; a 1-step run's time includes the compilation
        "state_bytes": state_bytes(opt),
        "params": n_params,
        "losses": losses,
    }
    if setup.start:
        out["trajectory"] = trajectory
    if task.name == "spirals":
        x, y = spirals()
        out["accuracy"] = mx.mean(mx.argmax(model(x), axis=1) == y).item()
    return out


def lr_grid(default: float) -> list[float]:
    """The ``--lr auto`` candidates: the default learning rate times 10^k, k = -1, -0.5, ..., 2."""
    return [float(f"{default * 10**k:.3g}") for k in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)]


SWEEP_EXTRA_TRIALS = 4  # at most this many trials beyond lr_grid when the best learning rate is at an edge


def sweep(
    task: Task,
    spec: str,
    steps: int,
    seed: int = 0,
    on_trial: Callable[[int, int], None] | None = None,
    extra_trials: int = SWEEP_EXTRA_TRIALS,
) -> tuple[float, list[dict]]:
    """Short runs over :func:`lr_grid`; returns the learning rate with the lowest final loss and the trials.

    When the best learning rate is the largest (smallest) one tried, the sweep goes on past it by the grid's
    factor of 10^0.5 until a trial is no better, at most ``extra_trials`` times in all; :func:`sweep_edge` says
    whether the choice is still at an edge of the range tried. ``on_trial(done, total)`` is called after each
    trial (``total`` grows when the sweep is extended). If no trial ends with a finite loss, the default
    learning rate is returned.
    """
    trials: list[dict] = []
    default = default_learning_rate(spec)
    grid = lr_grid(default)

    def run(lr: float) -> None:
        try:
            final = train(task, spec, lr, steps, seed)["final"]
        except ValueError:  # a learning rate the optimizer rejects
            final = math.inf
        trials.append({"learning_rate": lr, "final": final})
        if on_trial is not None:
            on_trial(len(trials), max(len(grid), len(trials)))

    for lr in grid:
        run(lr)
    for _ in range(extra_trials):
        edge = sweep_edge(trials)
        if edge is None:  # the best is inside the range tried (or nothing converged)
            break
        lrs = [t["learning_rate"] for t in trials]
        k = round(2 * math.log10((max(lrs) if edge == "high" else min(lrs)) / default)) / 2  # on the grid's steps
        run(float(f"{default * 10 ** (k + 0.5 if edge == 'high' else k - 0.5):.3g}"))
    best = _best(trials)
    if not math.isfinite(best["final"]):  # nothing converged: keep the default
        return default, trials
    return best["learning_rate"], trials


def _best(trials: list[dict]) -> dict:
    return min(trials, key=lambda t: t["final"])


def sweep_edge(trials: list[dict]) -> str | None:
    """``"high"`` / ``"low"`` when the best trial's learning rate is the largest / smallest one tried, else None.

    None too when no trial ended with a finite loss.
    """
    best = _best(trials)
    if not math.isfinite(best["final"]) or len(trials) < 2:
        return None
    lrs = [t["learning_rate"] for t in trials]
    if best["learning_rate"] == max(lrs):
        return "high"
    if best["learning_rate"] == min(lrs):
        return "low"
    return None
