"""Parity rows for :mod:`mlx_optim.optimizers.adamp`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row


def _layer_projection_runner(row: Row, compiled: bool):
    """AdamP on a problem whose rows are each (anti-)aligned with their gradient but cancel as a whole layer.

    The harness's problem only ever triggers AdamP's per-channel projection; here the
    per-channel ``|cos(g, p)|`` is large while the layer-wide cosine is near zero, so the
    layer-wise projection (and its weight-decay ratio) is exercised. Both sides get
    the same float32 gradients computed from their own current parameters.
    """
    rng = np.random.default_rng(3)
    init = rng.normal(size=(2, 8)).astype(np.float32)
    init[1] *= np.linalg.norm(init[0]) / np.linalg.norm(init[1])  # equal row norms: layer cosine ~ 0
    signs = np.array([[1.0], [-1.0]])
    noise = [rng.normal(scale=0.2, size=(2, 8)) for _ in range(row.steps)]

    def grad(p, t):
        return (signs * p + noise[t]).astype(np.float32)

    ref_p = torch.nn.Parameter(torch.from_numpy(init.copy()))
    ref = pytorch_optimizer.AdamP([ref_p], **row.torch_kwargs())
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    holder = {"w": mx.array(init)}
    opt.init(holder)

    def step(g):
        holder.update(opt.apply_gradients({"w": g}, holder))

    if compiled:
        step = mx.compile(step, inputs=[holder, opt.state], outputs=[holder, opt.state])
    mine, theirs = [], []
    for t in range(row.steps):
        ref_p.grad = torch.from_numpy(grad(ref_p.detach().numpy(), t))
        ref.step()
        step(mx.array(grad(np.array(holder["w"]), t)))
        mx.eval(holder, opt.state)
        theirs.append({"w": ref_p.detach().numpy().copy()})
        mine.append({"w": np.array(holder["w"])})
    return mine, theirs


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
