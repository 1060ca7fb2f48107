"""The gradient programs of the parity rows, in NumPy: the same numbers on every machine, no PyTorch.

A parity row feeds both sides (our optimizer and its PyTorch reference) a gradient computed from each side's
*current* parameters, so the two trajectories can be compared step by step. The default program
(:func:`harness`) has float32 parameters of shapes ``(7,)``, ``(5, 6)`` and ``(2, 3, 4)`` drawn from
``np.random.default_rng(0)``, and at step ``t`` the loss

    ``s_t * sum(0.5 (p - target)^2 - 0.1 cos(3p) + noise_t * p)``

with ``target`` and ``noise_t`` drawn from ``np.random.default_rng(1)`` and ``s_t`` loud (3.0) for the first
:data:`LOUD_STEPS` steps, then quiet and slowly varying (:func:`scale`). Its gradient is computed in float64 and
rounded to float32. Some rows run the same recipe on other shapes or seeds (:func:`shaped`), or a problem of
their own (:func:`sara`, :func:`adamp_layer`); all are built from a JSON-able spec by :func:`build`, which is how
the stored golden trajectories (:mod:`mlx_optim.check.goldens`) name them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "LOUD_STEPS",
    "SHAPES",
    "Problem",
    "build",
    "digest",
    "harness",
    "initial_params",
    "loss_and_grads",
    "scale",
]

SHAPES = {"a": (7,), "b": (5, 6), "c": (2, 3, 4)}
LOUD_STEPS = 6


def scale(t: int) -> float:
    """Gradient magnitude at step ``t``: loud start, then quiet and slowly varying."""
    return 3.0 if t < LOUD_STEPS else 0.03 * (1.0 + 0.5 * np.sin(t))


def initial_params(seed: int = 0) -> dict[str, np.ndarray]:
    """The harness's float32 initial parameters (``a``, ``b``, ``c``)."""
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


@functools.cache
def _problem(seed: int = 1, steps: int = 200):
    rng = np.random.default_rng(seed)
    target = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    noise = [{k: rng.normal(scale=0.5, size=s) for k, s in SHAPES.items()} for _ in range(steps)]
    return target, noise


def loss_and_grads(params: dict[str, np.ndarray], t: int, dtype=np.float32) -> tuple[Any, dict[str, np.ndarray]]:
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


class Problem:
    """Initial parameters and a gradient (and loss) function of the current parameters and the step.

    Args:
        init: the float32 initial parameters, by (dotted) name, in order.
        grads: ``grads(params, t) -> dict of float32 gradients`` (NumPy in, NumPy out).
        loss: ``loss(params, t) -> np.float32`` or ``None`` when the problem has no loss.
        nested: the dotted names are paths in a nested parameter tree (``mlx.utils.tree_unflatten``).
    """

    def __init__(
        self,
        init: dict[str, np.ndarray],
        grads: Callable[[dict, int], dict],
        loss: Callable[[dict, int], Any] | None = None,
        nested: bool = False,
    ):
        self.init, self._grads, self._loss, self.nested = init, grads, loss, nested

    def grads(self, params: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
        return self._grads(params, t)

    def loss_and_grads(self, params: dict[str, np.ndarray], t: int) -> tuple[Any, dict[str, np.ndarray]]:
        if self._loss is None:
            return None, self._grads(params, t)
        return self._loss(params, t), self._grads(params, t)


# ---------------------------------------------------------------------------------------------- the problems
def harness(steps: int = 0) -> Problem:
    """The default program (see the module docstring)."""

    def grads(params, t):
        return loss_and_grads(params, t)[1]

    def loss(params, t):
        return loss_and_grads(params, t)[0]

    return Problem(initial_params(), grads, loss)


def shaped(
    steps: int,
    shapes: list[tuple[str, list[int]]],
    seed: int = 0,
    data_seed: int | None = None,
    sin64: bool = True,
    nested: bool = False,
) -> Problem:
    """The harness's recipe on other shapes (``[name, shape]`` pairs, in drawing order): init ``N(0, 1)`` from
    ``default_rng(seed)``; target and noise from ``default_rng(data_seed)`` or, when ``data_seed`` is None, from
    the same generator after the init.

    ``sin64``: ``sin(3p)`` of the float64 parameter (the harness); False: of the float32 one (some rows' recipe).
    """
    shapes = {k: tuple(s) for k, s in (shapes.items() if isinstance(shapes, dict) else shapes)}
    rng = np.random.default_rng(seed)
    init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    drng = rng if data_seed is None else np.random.default_rng(data_seed)
    target = {k: drng.normal(size=s) for k, s in shapes.items()}
    noise = [{k: drng.normal(scale=0.5, size=s) for k, s in shapes.items()} for _ in range(steps)]

    def grads(params, t):
        s = scale(t)
        out = {}
        for k, p32 in params.items():
            p = p32.astype(np.float64)
            sin = np.sin(3 * p) if sin64 else np.sin(3 * p32)
            out[k] = (s * ((p - target[k]) + 0.3 * sin + noise[t][k])).astype(np.float32)
        return out

    return Problem(init, grads, nested=nested)


def sara(steps: int) -> Problem:
    """SaRA's nuclear-norm rows: a (70, 66) matrix (large enough for its rank penalty) and a (7,) vector."""
    rng = np.random.default_rng(3)
    init = {"w": (0.5 * rng.normal(size=(70, 66))).astype(np.float32), "a": rng.normal(size=(7,)).astype(np.float32)}
    target = {k: rng.normal(size=v.shape) for k, v in init.items()}
    noise = [{k: rng.normal(scale=0.5, size=v.shape) for k, v in init.items()} for _ in range(steps)]

    def grads(params, t):
        s = 3.0 if t < 4 else 0.05
        return {k: (s * (p.astype(np.float64) - target[k] + noise[t][k])).astype(np.float32) for k, p in params.items()}

    return Problem(init, grads)


def adamp_layer(steps: int) -> Problem:
    """AdamP's layer-wise projection: two rows of one (2, 8) matrix, each (anti-)aligned with its gradient, whose
    layer-wide cosine is near zero."""
    rng = np.random.default_rng(3)
    init = rng.normal(size=(2, 8)).astype(np.float32)
    init[1] *= np.linalg.norm(init[0]) / np.linalg.norm(init[1])  # equal row norms: layer cosine ~ 0
    signs = np.array([[1.0], [-1.0]])
    noise = [rng.normal(scale=0.2, size=(2, 8)) for _ in range(steps)]

    def grads(params, t):
        return {"w": (signs * params["w"] + noise[t]).astype(np.float32)}

    return Problem({"w": init}, grads)


KINDS: dict[str, Callable[..., Problem]] = {
    "harness": harness,
    "shaped": shaped,
    "sara": sara,
    "adamp_layer": adamp_layer,
}


# ---------------------------------------------------------------------------------------------- transforms
def zero_first(problem: Problem, steps: int) -> Problem:
    """The first ``steps`` gradients all zero (the loss unchanged)."""

    def grads(params, t):
        g = problem.grads(params, t)
        return {k: np.zeros_like(v) for k, v in g.items()} if t < steps else g

    return Problem(problem.init, grads, problem._loss, problem.nested)


def zero_some(grads: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    """Set some entries (``a``), rows (``b``) and fibres (``c``) of the step-``t`` gradient to exactly zero."""
    out = {k: g.copy() for k, g in grads.items()}
    out["a"][[i for i in range(7) if (i + t) % 3 == 0]] = 0.0
    out["b"][[i for i in range(5) if (i + t) % 2 == 0]] = 0.0
    for i in range(2):
        for j in range(3):
            if (i + j + t) % 3 == 0:
                out["c"][i, j] = 0.0
    return out


def sparse(problem: Problem) -> Problem:
    """Gradients with exact zeros (:func:`zero_some`): the entries a sparse lookup did not touch."""
    return Problem(problem.init, lambda p, t: zero_some(problem.grads(p, t), t), problem._loss, problem.nested)


def scaled_loss(problem: Problem, factor: float) -> Problem:
    """The loss times ``factor``, the gradients unchanged."""
    return Problem(problem.init, problem.grads, lambda p, t: np.float32(problem._loss(p, t) * factor), problem.nested)


def poisoned(problem: Problem, poison: dict) -> Problem:
    """Non-finite gradients: ``poison`` maps a step (as a string) to ``[leaf, flat index or None (the whole leaf),
    "nan" | "inf" | "-inf"]`` entries written into that step's gradient."""

    def grads(params, t):
        out = {k: g.copy() for k, g in problem.grads(params, t).items()}
        for leaf, index, value in poison.get(str(t), ()):
            if index is None:
                out[leaf][...] = float(value)
            else:
                out[leaf].reshape(-1)[index] = float(value)
        return out

    return Problem(problem.init, grads, problem._loss, problem.nested)


def build(spec: dict | None, steps: int) -> Problem:
    """The problem a JSON spec names: ``{"kind": "harness" | "shaped" | "sara" | "adamp_layer", ...keywords}``
    plus optional transforms ``"zero_first": n``, ``"sparse": true``, ``"loss_scale": x``, ``"poison": {...}``
    (:func:`poisoned`)."""
    spec = dict(spec or {})
    kind = spec.pop("kind", "harness")
    zero, sparse_, loss_scale = spec.pop("zero_first", 0), spec.pop("sparse", False), spec.pop("loss_scale", None)
    poison = spec.pop("poison", None)
    problem = KINDS[kind](steps, **spec)
    if zero:
        problem = zero_first(problem, zero)
    if sparse_:
        problem = sparse(problem)
    if poison:
        problem = poisoned(problem, poison)
    if loss_scale is not None:
        problem = scaled_loss(problem, loss_scale)
    return problem


def digest() -> str:
    """A fingerprint of the harness's random numbers (init, target, noise): the stored trajectories are only valid
    where NumPy's ``default_rng`` draws the same numbers."""
    target, noise = _problem()
    h = hashlib.sha256()
    for d in (initial_params(), target, noise[0], noise[-1]):
        for k in sorted(d):
            h.update(np.ascontiguousarray(d[k]).tobytes())
    return h.hexdigest()[:16]
