"""Parity rows for :mod:`mlx_optim.optimizers.apollo`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

from tests.parity import harness
from tests.parity.harness import Row, mlx_stepper
from tests.parity.runners.lowrank import _TORCH_ONLY_DROP, GALORE_DEFAULTS, _no_projection


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
