"""Parity rows for :mod:`mlx_optim.wrappers.trac`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Row, initial_params
from tests.parity.runners.wrappers_inner import ADAMW, SGDM
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs


def torch_trac(params, optimizer, lr=None, optimizer_kwargs=None, **kwargs):
    import pytorch_optimizer

    inner = _torch_class(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
    return pytorch_optimizer.TRAC(inner, **kwargs)


def trac_runner(row: Row, compiled: bool):
    """The standard harness loop on both sides, plus TRAC's scale ``s`` compared as an extra "parameter".

    With the default ``s_prev=1e-8`` the scale stays ~1e-7 over 20 steps, so the parameters move by less than
    one float32 ulp and comparing them alone would not test TRAC; the scale (through ``h``, ``sigma``,
    ``variance`` and the erfi approximation) is compared as well, divided by ``s_prev`` (so that the default
    atol does not swallow it: ``s / s_prev`` is ~10-30 here) with the default tolerance.
    """
    import torch as _torch

    from tests.parity.harness import loss_and_grads

    init = initial_params()
    holder = {"params": {k: mx.array(v) for k, v in init.items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])
    s_prev = row.kwargs.get("s_prev", 1e-8)

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    mine = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        mine.append({**{k: np.array(v) for k, v in holder["params"].items()}, "s": np.array(opt.state["s"]) / s_prev})
    if row.label not in _TRAC_REF_CACHE:
        params = {k: _torch.nn.Parameter(_torch.from_numpy(v.copy())) for k, v in init.items()}
        ref_opt = torch_trac(list(params.values()), **row.torch_kwargs())
        ref = []
        for t in range(row.steps):
            _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
            for k, p in params.items():
                p.grad = _torch.from_numpy(grads[k].copy())
            ref_opt.step()
            s_ref = ref_opt.state["trac"]["s"].numpy().copy().reshape(())
            ref.append({**{k: p.detach().numpy().copy() for k, p in params.items()}, "s": s_ref / s_prev})
        _TRAC_REF_CACHE[row.label] = ref
    return mine, _TRAC_REF_CACHE[row.label]


_TRAC_REF_CACHE: dict[str, list] = {}


ROWS = [
    # TRAC
    Row("trac", dict(ADAMW), runner=trac_runner),
    Row(
        "trac",
        {**SGDM, "betas": (0.9, 0.99), "num_coefs": 64, "s_prev": 1e-3, "eps": 1e-6},
        runner=trac_runner,
        id="sgd-2betas",
    ),
]
