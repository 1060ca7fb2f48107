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

import mlx_optim
from mlx_optim.base import group_selector
from mlx_optim.optimizers.muon import default_muon_filter
from tests.parity.harness import Row, initial_params, loss_and_grads, reference_class

_REFERENCE: dict[str, list] = {}


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


def _run_mlx(row: Row, compiled: bool, groups: list[dict]) -> list[dict[str, np.ndarray]]:
    holder = {"params": {k: mx.array(v) for k, v in initial_params().items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs, groups=groups)
    opt.init(holder["params"])

    def step(grads, loss):
        holder["params"] = opt.apply_gradients(grads, holder["params"], loss=loss)

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    traj = []
    for t in range(row.steps):
        loss, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()}, mx.array(loss))
        mx.eval(holder, opt.state)
        traj.append({k: np.array(v) for k, v in holder["params"].items()})
    return traj


def _run_reference(row: Row, groups: list[dict], to_torch: Callable) -> list[dict[str, np.ndarray]]:
    if row.label not in _REFERENCE:
        params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in initial_params().items()}
        opt = reference_class(row)(to_torch(params, groups, row.kwargs), **row.torch_kwargs())
        traj = []
        for t in range(row.steps):
            _, grads = loss_and_grads({k: p.detach().numpy() for k, p in params.items()}, t)
            for k, p in params.items():
                p.grad = torch.from_numpy(grads[k].copy())
            opt.step()
            traj.append({k: p.detach().numpy().copy() for k, p in params.items()})
        _REFERENCE[row.label] = traj
    return _REFERENCE[row.label]


def grouped(groups: list[dict], to_torch: Callable = plain_groups) -> Callable:
    """A row runner: the optimizer built with ``groups`` beside the reference built with the same groups."""

    def runner(row: Row, compiled: bool):
        return _run_mlx(row, compiled, groups), _run_reference(row, groups, to_torch)

    return runner


def group_row(
    name: str, kwargs: dict, groups: list[dict], id: str, to_torch: Callable = plain_groups, **kw: object
) -> Row:
    """A parity row of ``name`` built with ``groups`` (``id`` must contain ``groups``)."""
    assert "groups" in id
    assert set(_members(groups).values()) >= set(range(len(groups))), f"{id}: a group matches no parameter"
    return Row(name, kwargs, runner=grouped(groups, to_torch), id=id, **kw)
