"""Parity rows for :mod:`mlx_optim.optimizers.adamp`."""

from __future__ import annotations

import pytorch_optimizer
import torch

from mlx_optim.check import problems as check_problems
from tests.parity.harness import Portable, Row, torch_params


def _layer_projection_reference(row: Row):
    """AdamP on a problem whose rows are each (anti-)aligned with their gradient but cancel as a whole layer.

    The harness's problem only ever triggers AdamP's per-channel projection; here
    (``mlx_optim.check.problems.adamp_layer``) the per-channel ``|cos(g, p)|`` is large while the layer-wide
    cosine is near zero, so the layer-wise projection (and its weight-decay ratio) is exercised. Both sides get
    the same float32 gradients computed from their own current parameters.
    """
    problem = check_problems.adamp_layer(row.steps)
    params = torch_params(problem.init)
    ref = pytorch_optimizer.AdamP(list(params.values()), **row.torch_kwargs())
    theirs = []
    for t in range(row.steps):
        for k, g in problem.grads({k: p.detach().numpy() for k, p in params.items()}, t).items():
            params[k].grad = torch.from_numpy(g)
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return theirs


_layer_projection_runner = Portable(
    "standard", _layer_projection_reference, {"with_loss": False, "problem": {"kind": "adamp_layer"}}
)


ROWS = [
    # adamp: delta=2 makes the per-channel projection fire on part of the steps
    Row("adamp", {"learning_rate": 1e-2}),
    Row(
        "adamp",
        {"learning_rate": 1e-2, "delta": 2.0, "wd_ratio": 0.5, "weight_decay": 0.1, "nesterov": True},
        id="proj-nesterov",
    ),
    Row(
        "adamp",
        {
            "learning_rate": 1e-2,
            "delta": 1.5,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "use_gc": True,
            "cautious": True,
            "nesterov": True,
            "adanorm": True,
            "adam_debias": True,
            "maximize": True,
        },
        id="proj-gc-cautious-adanorm-max",
    ),
    Row(
        "adamp",
        {"learning_rate": 1e-2, "delta": 2.5, "weight_decay": 0.1, "weight_decouple": False, "cautious": True},
        id="proj-l2-cautious",
    ),
    Row(
        "adamp",
        {"learning_rate": 1e-2, "delta": 1.0, "wd_ratio": 0.3, "weight_decay": 0.1},
        runner=_layer_projection_runner,
        id="layer-projection",
    ),
]
