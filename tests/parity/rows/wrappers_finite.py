"""Parity rows for ApplyIfFinite (optax's ``apply_if_finite``): the harness's problem with poisoned gradients.

optax has no PyTorch class, so the reference is :class:`TorchApplyIfFinite`, a transcription of
``optax.transforms._conditionality.apply_if_finite`` around the same torch optimizer as the MLX inner one
(``pytorch_optimizer.load_optimizer(name)``): optax's ``lax.cond(isfinite or notfinite_count >
max_consecutive_errors, do_update, reject_update)`` becomes "call the torch optimizer's ``step`` or not", which
leaves the parameters and the torch optimizer's state as they were, as optax's ``reject_update`` does.

Each row carries :func:`finite_runner`: the standard loop (gradient of the harness's problem at each side's
current parameters) with a NaN or an infinity written into one element of one gradient leaf, or into a whole
leaf, at the steps of ``POISON``, on both sides; the counters of both sides are compared after every step too.
The schedule skips one step, then two in a row, then single steps with one or two leaves poisoned. A run longer
than ``max_consecutive_errors`` would be applied and make every parameter non-finite, which a trajectory
comparison cannot check, so the rows stay below the limit and the forcing is checked against a NumPy
transcription in ``tests/test_apply_if_finite.py``.
"""

from __future__ import annotations

import functools

import mlx.core as mx
import numpy as np
import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Row, initial_params, loss_and_grads, mlx_stepper
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs

NAN, INF = float("nan"), float("inf")
# step -> [(leaf, flat index or None for the whole leaf, value)]
POISON = {
    2: [("b", 7, NAN)],
    6: [("a", 3, INF)],
    7: [("c", 0, -INF)],
    11: [("a", None, NAN), ("c", 5, INF)],
    15: [("b", None, -INF)],
}


def poisoned(grads: dict[str, np.ndarray], t: int, poison: dict) -> dict[str, np.ndarray]:
    out = {k: g.copy() for k, g in grads.items()}
    for leaf, index, value in poison.get(t, ()):
        if index is None:
            out[leaf][...] = value
        else:
            out[leaf].reshape(-1)[index] = value
    return out


class TorchApplyIfFinite:
    """optax's ``apply_if_finite`` (``notfinite_count``, ``total_notfinite``, ``last_finite``) around a torch
    optimizer: a rejected update does not call ``step``."""

    def __init__(self, params, optimizer, max_consecutive_errors=5, lr=None, optimizer_kwargs=None):
        self.params = list(params)
        self.inner = _torch_class(optimizer)(self.params, **_torch_inner_kwargs(lr, optimizer_kwargs))
        self.max_consecutive_errors = max_consecutive_errors
        self.notfinite_count, self.total_notfinite, self.last_finite = 0, 0, True

    @torch.no_grad()
    def step(self, closure=None):
        isfinite = all(bool(torch.isfinite(p.grad).all()) for p in self.params)
        self.notfinite_count = 0 if isfinite else self.notfinite_count + 1
        if isfinite or self.notfinite_count > self.max_consecutive_errors:
            self.inner.step()
        self.last_finite = isfinite
        self.total_notfinite += 0 if isfinite else 1


def finite_runner(row: Row, compiled: bool, poison: dict = POISON):
    """``(mlx trajectory, torch trajectory)``; also checks the counters of both sides after every step."""
    opt, holder, step = mlx_stepper(row, compiled)
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in initial_params().items()}
    ref = TorchApplyIfFinite(list(params.values()), **row.torch_kwargs())
    mine, theirs = [], []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in poisoned(grads, t, poison).items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})

        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(poisoned(grads, t, poison)[k])
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in params.items()})

        got = (
            opt.state["notfinite_count"].item(),
            opt.state["total_notfinite"].item(),
            opt.state["last_finite"].item(),
        )
        assert got == (ref.notfinite_count, ref.total_notfinite, ref.last_finite), (row.label, t, got)
    return mine, theirs


SGDM = {"optimizer": "sgd", "learning_rate": 0.05, "optimizer_kwargs": {"momentum": 0.9}}

ROWS = [
    Row("applyiffinite", SGDM, runner=finite_runner),
    Row(
        "applyiffinite",
        {
            "optimizer": "adamw",
            "learning_rate": 1e-2,
            "max_consecutive_errors": 2,
            "optimizer_kwargs": {"weight_decay": 0.1, "amsgrad": True},
        },
        runner=finite_runner,
        id="adamw-m2",
    ),
    Row(
        "applyiffinite",
        {"optimizer": "adam", "learning_rate": 1e-2, "max_consecutive_errors": 1},
        runner=functools.partial(finite_runner, poison={t: v for t, v in POISON.items() if t != 7}),
        id="adam-m1",
    ),
]
