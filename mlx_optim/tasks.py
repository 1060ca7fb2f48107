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

    A wrapper (Lookahead, the SAM family, ...) given without ``:inner`` wraps ``adamw``. Unknown names raise
    ``ValueError`` listing the closest registered names.
    """
    outer, _, inner = spec.strip().lower().partition(":")
    cls = mlx_optim.load_optimizer(outer)
    if inner:
        if not is_wrapper(cls):
            raise ValueError(f"{outer!r} is not a wrapper: '{spec}' cannot wrap another optimizer")
        mlx_optim.load_optimizer(inner)
        return outer, inner
    return outer, (DEFAULT_WRAPPED if is_wrapper(cls) else None)


def is_wrapper(cls: type) -> bool:
    try:
        from mlx_optim.wrappers import Wrapper
    except ImportError:  # pragma: no cover - wrappers not present
        return False
    return issubclass(cls, Wrapper)


def default_learning_rate(spec: str) -> float:
    """The constructor's default ``learning_rate`` (of the inner optimizer for a wrapper), else 1e-3."""
    import inspect

    outer, inner = parse_optimizer_spec(spec)
    cls = mlx_optim.load_optimizer(inner or outer)
    p = inspect.signature(cls).parameters.get("learning_rate")
    if p is not None and isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
        return float(p.default)
    return 1e-3


def make_optimizer(spec: str, learning_rate: float, **kwargs: Any) -> mlx_optim.Optimizer:
    """Build ``spec`` (``name`` or ``wrapper:inner``) with ``learning_rate`` (the inner one's, for wrappers)."""
    outer, inner = parse_optimizer_spec(spec)
    cls = mlx_optim.load_optimizer(outer)
    if inner is not None:
        return cls(inner, learning_rate=learning_rate, **kwargs)
    return cls(learning_rate=learning_rate, **kwargs)


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
    compilable = getattr(opt, "compilable", True) and getattr(getattr(opt, "inner", None), "compilable", True)
    lg = mlx_optim.value_and_grad(model, setup.loss_fn, compile=not compilable)
    opt.init(model.trainable_parameters())  # the state's structure is fixed before tracing: no retrace
    state = [model.state, opt.state]

    def step(*batch):
        return opt.step_with(model, lg, *batch)

    if compilable:
        step = mx.compile(step, inputs=state, outputs=state)
    n_params = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    losses: list[float] = []
    trajectory: list[list[float]] = [list(setup.start)] if setup.start else []
    start = 0.0
    for i in range(steps):
        if i == 1:  # time from the second step: the first one traces and compiles
            start = time.perf_counter()
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
        "ms_per_step": 1000 * elapsed / max(len([v for v in losses if math.isfinite(v)]) - 1, 1),
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


def sweep(task: Task, spec: str, steps: int, seed: int = 0, on_trial=None) -> tuple[float, list[dict]]:
    """Short runs over :func:`lr_grid`; returns the learning rate with the lowest final loss and the trials."""
    trials = []
    for lr in lr_grid(default_learning_rate(spec)):
        try:
            r = train(task, spec, lr, steps, seed)
            final = r["final"]
        except ValueError:  # a learning rate the optimizer rejects
            final = math.inf
        trials.append({"learning_rate": lr, "final": final})
        if on_trial is not None:
            on_trial()
    best = min(trials, key=lambda t: t["final"])
    if not math.isfinite(best["final"]):  # nothing converged: keep the default
        return default_learning_rate(spec), trials
    return best["learning_rate"], trials
