"""Parity rows for :mod:`mlx_optim.optimizers.muon`."""

from __future__ import annotations

import functools
import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from mlx_optim.optimizers.muon import default_muon_filter
from tests.parity.harness import Row, initial_params, loss_and_grads
from tests.parity.runners.groups import group_row, muon_groups
from tests.parity.runners.muon import (
    ADAMW_OPTS,
    NS_NOTE,
    _as_mx,
    _named,
    muon_ref,
    not_c,
    ns_float32,
    only_c,
    reference_ns_dtype,
)

MUON = muon_ref(pytorch_optimizer.Muon)


MUONCLIP = muon_ref(pytorch_optimizer.MuonClip)


# QK-Clip: b (5 rows) is the query of a 5-head attention, c (2 heads along axis 0) a key, a a rotary query
CLIP_MAP = {"b": ("query", "attn5"), "c": ("key", "attn2"), "a": ("query_rotary", "attn7")}


HEADS = {"attn5": 5, "attn2": 2, "attn7": 7}


def clip_rotary_key(path, p):
    return {"c": ("key_rotary", "attn2"), "b": ("key", "attn5")}.get(path)


def max_logits(t: int) -> dict[str, np.ndarray]:
    """Per-head maximum logits at step ``t``: around the threshold 100, so some heads clip and some do not."""
    return {
        name: (100.0 + 60.0 * np.sin(t + np.arange(h) * 1.3 + 0.1 * i)).astype(np.float32)
        for i, (name, h) in enumerate(HEADS.items())
    }


def muonclip_ref(params, muon_filter=None, qk_clip=None, **kw):
    keep = muon_filter or default_muon_filter
    groups = []
    for n, p in _named(params):
        group = {"params": [p], "use_muon": keep(n, _as_mx(p))}
        spec = qk_clip(n, _as_mx(p)) if callable(qk_clip) else (qk_clip or {}).get(n)
        if spec is not None:
            group["qk_clip"], group["attention_name"] = spec
        groups.append(group)
    return pytorch_optimizer.MuonClip(groups, **kw)


def clip_runner(row: Row, compiled: bool, via_model: bool = False):
    """The harness's two sides, with ``attention_max_logits`` passed to every step.

    ``via_model``: our side holds the parameters in an ``nn.Module`` and calls
    ``opt.update(model, grads, attention_max_logits=...)`` (the documented convention).
    """
    init = initial_params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ropt = muonclip_ref(list(tparams.values()), **row.torch_kwargs())
    ref = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: p.detach().numpy() for k, p in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(grads[k].copy())
        ropt.step(attention_max_logits={n: torch.from_numpy(v) for n, v in max_logits(t).items()})
        ref.append({k: p.detach().numpy().copy() for k, p in tparams.items()})

    holder = {"params": {k: mx.array(v) for k, v in init.items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])

    model = nn.Module()
    for k, v in holder["params"].items():
        setattr(model, k, v)

    def step(grads, logits):
        if via_model:
            opt.update(model, grads, attention_max_logits=logits)
            holder["params"] = {k: model[k] for k in holder["params"]}
        else:
            holder["params"] = opt.apply_gradients(grads, holder["params"], attention_max_logits=logits)

    if compiled:
        state = [holder, opt.state, model]
        step = mx.compile(step, inputs=state, outputs=state)
    mine = []
    for t in range(row.steps):
        _, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()}, {n: mx.array(v) for n, v in max_logits(t).items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, ref


def _clipping_happens() -> bool:
    """Guard for the rows below: the synthetic logits exceed the threshold for some heads and not others."""
    values = np.concatenate([v for t in range(20) for v in max_logits(t).values()])
    return bool((values > 100).any() and (values <= 100).any() and math.isfinite(values.max()))


assert _clipping_happens()


ROWS = [
    # muon: defaults route b (5, 6) and c (2, 3, 4) to Muon, a (7,) to AdamW
    Row("muon", {"learning_rate": 2e-2}, ref=MUON, atol=1e-3, note=NS_NOTE),  # measured 5.5e-4,
    Row(
        "muon",
        {
            "learning_rate": 2e-2,
            "weight_decay": 0.1,
            "nesterov": False,
            "use_adjusted_lr": True,
            **ADAMW_OPTS,
            "adamw_eps": 1e-8,
            "maximize": True,
            "cautious": True,
        },
        ref=MUON,
        id="options",
    ),
    Row(
        "muon",
        {
            "learning_rate": 2e-2,
            "momentum": 0.9,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adamw_wd": 0.1,
            "ns_coeffs": "quintic",
            "ns_steps": 6,
            "muon_filter": not_c,
        },
        ref=MUON,
        id="l2-filter-quintic",
    ),
    Row(
        "muon",
        {"learning_rate": 2e-2, "cautious": True, "ns_coeffs": "polar_express", "muon_filter": only_c},
        ref=MUON,
        ref_kwargs={"foreach": False},  # the reference's per-parameter path
        id="per-param-polar",
    ),
    Row(
        "muon",
        {"learning_rate": 2e-2, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3), "ns_steps": 5},
        ref=MUON,
        id="gram",
    ),
    # muonclip without logits: Muon with heavy-ball momentum and Moonlight's lr factor
    Row("muonclip", {"learning_rate": 2e-2}, ref=MUONCLIP),
    Row(
        "muonclip",
        {
            "learning_rate": 2e-2,
            "momentum": 0.9,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "use_adjusted_lr": False,
            **ADAMW_OPTS,
            "adamw_eps": 1e-8,
            "maximize": True,
            "cautious": True,
            "ns_coeffs": "quintic",
            "muon_filter": not_c,
        },
        ref=MUONCLIP,
        id="options",
    ),
    Row(
        "muonclip",
        {"learning_rate": 2e-2, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3), "weight_decay": 0.1},
        ref=MUONCLIP,
        id="gram",
    ),
    # muonclip with QK-Clip
    Row(
        "muonclip",
        {"learning_rate": 2e-2, "qk_clip": CLIP_MAP},
        runner=clip_runner,
        id="qk-clip",
    ),
    Row(
        "muonclip",
        {"learning_rate": 2e-2, "qk_clip": clip_rotary_key, "qk_clip_threshold": 90.0, "qk_clip_alpha": 0.3},
        runner=functools.partial(clip_runner, via_model=True),
        id="qk-clip-rotary-key",
    ),
    # parameter groups (pytorch_optimizer.Muon param_groups) with its AdamW groups: a Muon group with its own
    # lr / momentum / decay, an AdamW group with its own adamw_lr / adamw_betas / adamw_wd
    group_row(
        "muon",
        {"learning_rate": 2e-2},
        [
            {"params": "c", "learning_rate": 1e-2, "momentum": 0.9, "weight_decay": 0.1},
            {"params": "a", "adamw_lr": 3e-3, "adamw_betas": (0.8, 0.9), "adamw_wd": 0.05},
        ],
        id="groups-muon-and-adamw",
        to_torch=muon_groups,
        ref=pytorch_optimizer.Muon,
        atol=1e-3,  # measured 5.5e-4 (as this module's first row)
        note=NS_NOTE,
    ),
]

# the rows above compare with the reference's low-precision iteration (our CPU default is float32)
ROWS = [reference_ns_dtype(r) for r in ROWS] + [
    # float32 iteration on both sides (the reference's helpers with their dtype=torch.float32)
    Row("muon", {"learning_rate": 2e-2, "ns_dtype": "float32"}, ref=ns_float32(MUON), id="ns-f32"),
    Row(
        "muon",
        {"learning_rate": 2e-2, "ns_dtype": mx.float32, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3)},
        ref=ns_float32(MUON),
        id="gram-ns-f32",
    ),
]
