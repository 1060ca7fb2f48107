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

import numpy as np
import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from mlx_optim.check import problems as check_problems
from tests.parity.harness import Portable, Row, initial_params, torch_params
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


def _spec(poison: dict) -> dict:
    """``POISON`` as the program's JSON problem transform (``mlx_optim.check.problems.poisoned``)."""
    return {"poison": {str(t): [[leaf, index, repr(value)] for leaf, index, value in v] for t, v in poison.items()}}


COUNTERS = ["notfinite_count", "total_notfinite", "last_finite"]


def _finite_reference(row: Row, poison: dict):
    """The torch side of the standard loop on poisoned gradients; its counters are recorded with the parameters
    after every step, as ours are (program option ``state_scalars``), so the trajectories compare them too."""
    problem = check_problems.build(_spec(poison), row.steps)
    params = torch_params(initial_params())
    ref = TorchApplyIfFinite(list(params.values()), **row.torch_kwargs())
    theirs = []
    for t in range(row.steps):
        grads = problem.grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k])
        ref.step()
        counters = (ref.notfinite_count, ref.total_notfinite, ref.last_finite)
        theirs.append(
            {
                **{k: p.detach().numpy().copy() for k, p in params.items()},
                **{name: np.array(float(v)) for name, v in zip(COUNTERS, counters)},
            }
        )
    return theirs


def finite_runner_for(poison: dict = POISON) -> Portable:
    """The standard loop (gradient of the harness's problem at each side's current parameters) with the non-finite
    values of ``poison`` written into the gradients on both sides; the counters compared after every step too."""
    options = {"with_loss": False, "problem": _spec(poison), "state_scalars": COUNTERS}
    return Portable("standard", lambda row: _finite_reference(row, poison), options)


finite_runner = finite_runner_for()


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
        runner=finite_runner_for({t: v for t, v in POISON.items() if t != 7}),
        id="adam-m1",
    ),
]
