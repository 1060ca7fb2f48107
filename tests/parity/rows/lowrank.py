"""Parity rows for the low-rank / projected optimizers (mlx_optim/optimizers/lowrank.py).

* galore, fira, conda: the reference runs with ``torch.linalg.svd`` wrapped to return the
  same sign convention as :func:`mlx_optim.optimizers.lowrank.canonical_svd` (each left
  singular vector's largest-magnitude entry positive). Singular vectors are only defined up
  to sign, torch's and MLX's LAPACK calls return different signs, and the moments are kept in
  the projected coordinates across refreshes, so without a common convention the runs differ
  after the first refresh for reasons that are not bugs. Both sides still compute their own
  SVD of their own gradient (or momentum), so the SVD itself is under test.
  The projection settings are group keys in the reference (``rank`` etc. in its ``**kwargs``);
  rows that rely on our defaults pass them through ``ref_kwargs``. ``projection_filter`` has no
  torch counterpart and is dropped from the torch keywords (a row with a filter that rejects
  every leaf is compared with the reference *without* the group keys, i.e. unprojected).
* "full" projection rows use ``eps=1e-3``: on a refresh step ``A^T G B^T`` of the SVD basis of
  ``G`` (GaLore, Fira; Conda's momentum on step 1) is diagonal, and its off-diagonal entries are
  float32 rounding noise (~1e-8) that Adam's elementwise ``m / (sqrt(v) + eps)`` blows up to
  O(1e-2) relative changes with eps=1e-6: a difference between any two SVD implementations
  (measured 2e-4 absolute on step 1 with the default eps), not a porting error.
* apollo: the projection is random (``torch.randn`` from the global generator in the
  reference, a per-leaf key in our state). :func:`apollo_runner` makes the reference
  deterministic by feeding it *our* draws: before every step it replays our key schedule
  (the same ``mx.random.split`` / ``mx.random.normal`` calls the optimizer makes), and the
  reference's ``torch.randn`` returns those raw Gaussian matrices on its refresh steps. The
  comparison is then exact up to float32 rounding, at the default tolerance.
* Properties of our own projection (orthonormality, captured energy, random-basis
  statistics) are tested in tests/test_lowrank.py.
"""

from __future__ import annotations

import contextlib

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

from tests.parity import harness
from tests.parity.harness import Row, mlx_stepper

_TORCH_ONLY_DROP = ("projection_filter", "seed")


@contextlib.contextmanager
def canonical_torch_svd():
    """``torch.linalg.svd`` with each left singular vector's largest-magnitude entry made positive."""
    original = torch.linalg.svd

    def svd(a, full_matrices=True, **kw):
        u, s, vh = original(a, full_matrices=full_matrices, **kw)
        idx = u.abs().argmax(dim=0)
        sign = torch.sign(u[idx, torch.arange(u.shape[1])])
        sign[sign == 0] = 1
        return u * sign, s, vh * sign[:, None]  # GaLore calls it with full_matrices=False

    torch.linalg.svd = svd
    try:
        yield
    finally:
        torch.linalg.svd = original


def _svd_ref(cls, group_keys: bool = True):
    """A factory building ``cls`` whose ``step`` runs under :func:`canonical_torch_svd`.

    ``group_keys``: fill in our default projection settings the row does not set (the reference
    needs all four group keys to project).
    """

    def make(params, **kwargs):
        for k in _TORCH_ONLY_DROP:
            kwargs.pop(k, None)
        if group_keys:
            kwargs = {**GALORE_DEFAULTS, **kwargs}
        opt = cls(params, **kwargs)
        step = opt.step

        def patched(closure=None):
            with canonical_torch_svd():
                return step(closure)

        opt.step = patched
        return opt

    return make


def _plain_ref(cls):
    def make(params, **kwargs):
        for k in (*_TORCH_ONLY_DROP, "rank", "update_proj_gap", "scale", "projection_type"):
            kwargs.pop(k, None)
        return cls(params, **kwargs)

    return make


GALORE_DEFAULTS = {"rank": 128, "update_proj_gap": 50, "scale": 1.0, "projection_type": "std"}


def _no_projection(path, p):
    return False


# ----------------------------------------------------------------------------- APOLLO: shared random draws
def _replay_draws(opt, state: dict, shape) -> tuple[np.ndarray, np.ndarray]:
    """The raw Gaussian matrices the optimizer's next step draws for a leaf (its key schedule, replayed)."""
    _, sub = mx.random.split(state["key"])
    k_left, k_right = mx.random.split(sub)
    m, n = shape
    left = mx.random.normal((m, opt.rank), key=k_left)
    right = mx.random.normal((opt.rank, n), key=k_right)
    return np.array(left), np.array(right)


def apollo_runner(row: Row, compiled: bool):
    init = harness.initial_params()
    opt, holder, step = mlx_stepper(row, compiled, init)
    mine, draws = [], []
    for t in range(row.steps):
        draws.append(
            {k: _replay_draws(opt, opt.state[k], v.shape) for k, v in holder["params"].items() if "key" in opt.state[k]}
        )
        _, grads = harness.loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})

    # The reference, with torch.randn returning our draws (it draws the left then the right matrix).
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    kwargs = row.torch_kwargs()
    drop = _TORCH_ONLY_DROP
    if kwargs.get("projection_filter") is _no_projection:  # the reference's group without the projection keys
        drop = (*drop, "rank", "update_proj_gap", "scale", "projection_type")
    for k in drop:
        kwargs.pop(k, None)
    if "rank" not in drop:
        kwargs = {**GALORE_DEFAULTS, **kwargs}
    ref = pytorch_optimizer.APOLLO(list(params.values()), **kwargs)
    original = torch.randn
    ref_traj = []
    for t in range(row.steps):
        queue = [torch.from_numpy(a.copy()) for k in draws[t] for a in draws[t][k]]

        def randn(*shape, queue=queue, **kw):
            if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
                shape = tuple(shape[0])
            out = queue.pop(0)
            assert tuple(out.shape) == tuple(shape), (out.shape, shape)
            return out

        _, grads = harness.loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        torch.randn = randn
        try:
            ref.step()
        finally:
            torch.randn = original
        ref_traj.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return mine, ref_traj


ROWS = [
    # galore
    Row("galore", {"learning_rate": 1e-2}, ref=_svd_ref(pytorch_optimizer.GaLore)),
    Row(
        "galore",
        {
            "learning_rate": 1e-2,
            "rank": 3,
            "update_proj_gap": 4,
            "scale": 0.25,
            "weight_decay": 0.1,
            "betas": (0.8, 0.99),
            "eps": 1e-8,
        },
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="rank3-gap4-wd",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 3, "projection_type": "reverse_std", "maximize": True},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="reverse-max",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 4, "update_proj_gap": 5, "projection_type": "full", "scale": 0.5, "eps": 1e-3},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="full",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": None, "update_proj_gap": 6, "projection_type": "right"},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="right-fullrank",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 3, "update_proj_gap": 7, "projection_type": "left"},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="left",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 4, "projection_type": "random"},
        ref=_svd_ref(pytorch_optimizer.GaLore),
        id="random-is-svd",
    ),
    Row(
        "galore",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "projection_filter": _no_projection},
        ref=_plain_ref(pytorch_optimizer.GaLore),
        id="filter-none",
    ),
    # fira
    Row("fira", {"learning_rate": 1e-2}, ref=_svd_ref(pytorch_optimizer.Fira)),
    Row(
        "fira",
        {"learning_rate": 1e-2, "rank": 3, "update_proj_gap": 4, "scale": 0.25, "weight_decay": 0.1},
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="rank3-gap4-wd",
    ),
    Row(
        "fira",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 3, "projection_type": "reverse_std", "maximize": True},
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="reverse-max",
    ),
    Row(
        "fira",
        {
            "learning_rate": 1e-2,
            "rank": 3,
            "update_proj_gap": 5,
            "projection_type": "full",
            "betas": (0.8, 0.99),
            "eps": 1e-3,
        },
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="full",
    ),
    Row(
        "fira",
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 6, "projection_type": "left", "eps": 1e-8},
        ref=_svd_ref(pytorch_optimizer.Fira),
        id="left",
    ),
    Row(
        "fira",
        {"learning_rate": 1e-2, "projection_filter": _no_projection},
        ref=_plain_ref(pytorch_optimizer.Fira),
        id="filter-none",
    ),
    # conda
    Row("conda", {"learning_rate": 1e-2}, ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False)),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 4, "scale": 0.5, "weight_decay": 0.1, "betas": (0.8, 0.99)},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="gap4-wd",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 3, "projection_type": "reverse_std", "maximize": True, "eps": 1e-6},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="reverse-max",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 5, "projection_type": "full", "eps": 1e-3},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="full",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 5, "projection_type": "left"},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="left",
    ),
    Row(
        "conda",
        {"learning_rate": 1e-2, "update_proj_gap": 4, "projection_type": "right"},
        ref=_svd_ref(pytorch_optimizer.Conda, group_keys=False),
        id="right",
    ),
    # Conda's unprojected update is GaLore's (pytorch_optimizer's shared update_unprojected_foreach)
    Row(
        "conda",
        {"learning_rate": 1e-2, "weight_decay": 0.1, "projection_filter": _no_projection},
        ref=_plain_ref(pytorch_optimizer.GaLore),
        ref_kwargs={"eps": 1e-8},
        id="filter-none",
    ),
    # apollo
    Row("apollo", {"learning_rate": 1e-2}, runner=apollo_runner),
    Row(
        "apollo",
        {
            "learning_rate": 1e-2,
            "rank": 3,
            "update_proj_gap": 4,
            "scale": 0.5,
            "scale_type": "channel",
            "weight_decay": 0.1,
            "seed": 3,
        },
        runner=apollo_runner,
        id="channel-rank3-wd",
    ),
    Row(
        "apollo",
        {
            "learning_rate": 1e-2,
            "rank": 4,
            "update_proj_gap": 3,
            "projection_type": "reverse_std",
            "weight_decay": 0.1,
            "weight_decouple": False,
            "correct_bias": False,
            "maximize": True,
        },
        runner=apollo_runner,
        id="reverse-l2-nobias-max",
    ),
    Row(
        "apollo",
        {
            "learning_rate": 1e-2,
            "rank": 2,
            "update_proj_gap": 5,
            "projection_type": "full",
            "weight_decay": 0.1,
            "fixed_decay": True,
            "scale_type": "channel",
            "betas": (0.8, 0.99),
            "eps": 1e-8,
        },
        runner=apollo_runner,
        id="full-fixed",
    ),
    Row(
        "apollo",
        {"learning_rate": 1e-2, "rank": 8, "update_proj_gap": 6, "projection_type": "right", "scale_type": "channel"},
        runner=apollo_runner,
        id="right-rank8",
    ),
    Row(
        "apollo",
        {"learning_rate": 1e-2, "rank": 3, "projection_type": "left", "projection_filter": _no_projection},
        runner=apollo_runner,
        id="filter-none",
    ),
]
