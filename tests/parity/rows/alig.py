"""Parity rows for :mod:`mlx_optim.optimizers.alig`."""

from __future__ import annotations

import functools

import pytorch_optimizer
from pytorch_optimizer.optimizer.alig import l2_projection as torch_l2_projection

from mlx_optim.optimizers.alig import l2_projection
from tests.parity.harness import Row


def alig_projected(params, projection_fn=None, max_norm=9.0, **kw):
    """pytorch_optimizer AliG with ``projection_fn`` projecting its own parameters onto an L2 ball."""
    return pytorch_optimizer.AliG(params, projection_fn=lambda: torch_l2_projection(params, max_norm), **kw)


ROWS = [
    # alig: max_lr=None (uncapped Polyak step) is the default
    Row("alig", {}),
    Row("alig", {"max_lr": 0.05, "momentum": 0.9}, id="cap-momentum"),
    Row("alig", {"max_lr": 0.05, "momentum": 0.5, "adjusted_momentum": True, "maximize": True}, id="adjusted-max"),
    Row(
        "alig",
        {"momentum": 0.8, "projection_fn": functools.partial(l2_projection, max_norm=9.0)},
        ref=alig_projected,
        id="projection",
    ),
]
