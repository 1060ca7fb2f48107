"""Parameter groups in parity rows: ``groups=[...]`` against the reference's ``param_groups``.

A group row (:func:`group_row`, in the rows module of its optimizer, with ``groups`` in its id) gives the
constructor keywords (``kwargs``, which every parameter not in a group uses) and the groups: MLX selectors on
the harness parameter names (``a`` (7,), ``b`` (5, 6), ``c`` (2, 3, 4)). The reference gets one torch group per
MLX group with the same parameters and overrides (``learning_rate`` -> ``lr``), after a first group holding the
unmatched parameters with the constructor's values (torch's ``param_groups[0]``, which Prodigy reads its global
values from, as ours reads the constructor's).

Group rows go after a module's first row: tests/test_contract.py drives every optimizer with the keywords of its
first row.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import numpy as np
import torch

from mlx_optim.base import group_selector
from mlx_optim.check.encode import encode
from mlx_optim.optimizers.muon import default_muon_filter
from tests.parity.harness import Portable, Row, initial_params, loss_and_grads, reference_class, torch_params


def _members(groups: list[dict]) -> dict[str, int | None]:
    """Harness parameter name -> index of its group (first match, as the optimizer does), None: unmatched."""
    out = {}
    for name, value in initial_params().items():
        out[name] = next(
            (i for i, g in enumerate(groups) if group_selector(g["params"])[0](name, mx.array(value))), None
        )
    return out


def _torch_overrides(group: dict) -> dict:
    out = {}
    for k, v in group.items():
        if k in ("params", "name"):
            continue
        out["lr" if k == "learning_rate" else k] = tuple(v) if isinstance(v, list) else v
    return out


def plain_groups(params: dict[str, torch.Tensor], groups: list[dict], kwargs: dict) -> list[dict]:
    """torch ``param_groups``: the unmatched parameters first, then one group per MLX group."""
    members = _members(groups)
    default = [p for n, p in params.items() if members[n] is None]
    out = [{"params": default}] if default else []
    for i, g in enumerate(groups):
        out.append({"params": [p for n, p in params.items() if members[n] == i], **_torch_overrides(g)})
    return out


_MUON_SIDE = {"learning_rate": "lr", "momentum": "momentum", "weight_decay": "weight_decay"}
_ADAMW_SIDE = {"adamw_lr": "lr", "adamw_betas": "betas", "adamw_eps": "eps", "adamw_wd": "weight_decay"}


def muon_groups(params: dict[str, torch.Tensor], groups: list[dict], kwargs: dict) -> list[dict]:
    """pytorch_optimizer.Muon's groups: each MLX group split by ``use_muon`` (our default ``muon_filter``), the
    Muon overrides on its Muon half, the ``adamw_*`` ones (as ``lr``, ``betas``, ...) on its AdamW half."""
    members = _members(groups)
    out = []
    for i in (None, *range(len(groups))):
        spec = {} if i is None else groups[i]
        names = [n for n in params if members[n] == i]
        for use_muon, side in ((True, _MUON_SIDE), (False, _ADAMW_SIDE)):
            chosen = [
                params[n] for n in names if default_muon_filter(n, mx.array(params[n].detach().numpy())) == use_muon
            ]
            if chosen:
                extra = {side[k]: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k in side}
                out.append({"params": chosen, "use_muon": use_muon, **extra})
    return out


def _reference(row: Row, groups: list[dict], to_torch: Callable) -> list[dict[str, np.ndarray]]:
    params = torch_params(initial_params())
    opt = reference_class(row)(to_torch(params, groups, row.kwargs), **row.torch_kwargs())
    traj = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        opt.step()
        traj.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return traj


def grouped(groups: list[dict], to_torch: Callable = plain_groups) -> Portable:
    """A row runner: the optimizer built with ``groups`` (program option ``groups``) beside the reference built
    with the same groups."""
    return Portable("standard", lambda row: _reference(row, groups, to_torch), {"groups": encode(groups)})


def group_row(
    name: str, kwargs: dict, groups: list[dict], id: str, to_torch: Callable = plain_groups, **kw: object
) -> Row:
    """A parity row of ``name`` built with ``groups`` (``id`` must contain ``groups``)."""
    assert "groups" in id
    assert set(_members(groups).values()) >= set(range(len(groups))), f"{id}: a group matches no parameter"
    return Row(name, kwargs, runner=grouped(groups, to_torch), id=id, **kw)
