"""Parity rows for :mod:`mlx_optim.wrappers.trac`."""

from __future__ import annotations

import torch

import mlx_optim
import mlx_optim.wrappers  # noqa: F401  (registers the wrappers)
from tests.parity.harness import Portable, Row, initial_params, torch_params
from tests.parity.runners.wrappers_inner import ADAMW, SGDM
from tests.parity.runners.wrappers_torch import _torch_class, _torch_inner_kwargs


def torch_trac(params, optimizer, lr=None, optimizer_kwargs=None, **kwargs):
    import pytorch_optimizer

    inner = _torch_class(optimizer)(params, **_torch_inner_kwargs(lr, optimizer_kwargs))
    return pytorch_optimizer.TRAC(inner, **kwargs)


def _trac_reference(row: Row):
    """The standard harness loop, plus TRAC's scale ``s`` compared as an extra "parameter" (ours: program option
    ``record="trac_s"``).

    With the default ``s_prev=1e-8`` the scale stays ~1e-7 over 20 steps, so the parameters move by less than
    one float32 ulp and comparing them alone would not test TRAC; the scale (through ``h``, ``sigma``,
    ``variance`` and the erfi approximation) is compared as well, divided by ``s_prev`` (so that the default
    atol does not swallow it: ``s / s_prev`` is ~10-30 here) with the default tolerance.
    """
    from tests.parity.harness import loss_and_grads

    s_prev = row.kwargs.get("s_prev", 1e-8)
    params = torch_params(initial_params())
    ref_opt = torch_trac(list(params.values()), **row.torch_kwargs())
    ref = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        ref_opt.step()
        s_ref = ref_opt.state["trac"]["s"].numpy().copy().reshape(())
        ref.append({**{k: p.detach().numpy().copy() for k, p in params.items()}, "s": s_ref / s_prev})
    return ref


trac_runner = Portable("standard", _trac_reference, {"with_loss": False, "record": "trac_s"})


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
