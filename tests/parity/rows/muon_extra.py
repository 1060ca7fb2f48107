"""Parity rows for NorMuon, MuonClip and SpectralSphere (mlx_optim/optimizers/muon_extra.py).

The reference groups are built from ``muon_filter`` as in ``tests/parity/rows/muon.py``;
MuonClip's QK-Clip rows also label groups with ``qk_clip``/``attention_name`` and pass
the same synthetic per-head maximum logits to both sides every step.
"""

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
from tests.parity.rows.muon import ADAMW_OPTS, NS_NOTE, _as_mx, _named, muon_ref, not_c, only_c

NORMUON = muon_ref(pytorch_optimizer.NorMuon)
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


def matrices(path, p):
    """SpectralSphere supports 2-D parameters only: b (5, 6); a and c stay unchanged on both sides."""
    return p.ndim == 2


def spectralsphere_ref(params, spectral_filter=None, **kw):
    """The reference gets only the leaves ``spectral_filter`` selects (ours leaves the others unchanged)."""
    keep = [p for n, p in _named(params) if spectral_filter is None or spectral_filter(n, _as_mx(p))]
    return pytorch_optimizer.SpectralSphere(keep, **kw)


def matrices_t(path, p):
    return path == "b"


ROWS = [
    # normuon: reference default path (batched foreach); b and c orthogonalized, a on AdamW
    Row("normuon", {"learning_rate": 2e-2}, ref=NORMUON),
    Row(
        "normuon",
        {
            "learning_rate": 2e-2,
            "momentum": 0.9,
            "beta2": 0.8,
            "weight_decay": 0.1,
            "nesterov": False,
            "use_adjusted_lr": True,
            **ADAMW_OPTS,
            "adamw_eps": 1e-8,
            "eps": 1e-6,
            "maximize": True,
        },
        ref=NORMUON,
        id="options",
    ),
    Row(
        "normuon",
        {
            "learning_rate": 2e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "adamw_wd": 0.1,
            "update_scale": "match_rms",
            "ns_coeffs": "quintic",
            "muon_filter": not_c,
        },
        ref=NORMUON,
        atol=1e-4,  # measured 1.8e-5: one bf16 Newton-Schulz flip at step 8 on identical inputs
        note=NS_NOTE,
        id="l2-rms-filter",
    ),
    Row(
        "normuon",
        {"learning_rate": 2e-2, "ns_coeffs": "polar_express", "muon_filter": only_c},
        ref=NORMUON,
        ref_kwargs={"foreach": False},  # the reference's per-parameter path
        id="per-param",
    ),
    Row(
        "normuon",
        {"learning_rate": 2e-2, "ns_method": "gram_newton_schulz", "ns_reset_steps": (1, 3)},
        ref=NORMUON,
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
    # spectralsphere: we port the reference's batched solver (solve_lambda_foreach; its path with foreach=True,
    # the default on CUDA). Its default CPU path bisects in float64 Python floats; the multiplier's residual f is
    # a bfloat16 value that is not monotone at that scale, so float64 and float32 midpoints can end on different
    # multipliers: the reference's own two paths differ by 9.6e-4 on the default row (ours vs batched: 4.5e-8).
    Row(
        "spectralsphere",
        {"learning_rate": 1e-2, "spectral_filter": matrices},
        ref=spectralsphere_ref,
        ref_kwargs={"foreach": True},
    ),
    Row(
        "spectralsphere",
        {
            "learning_rate": 1e-2,
            "momentum": 0.8,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "nesterov": False,
            "power_iteration_steps": 4,
            "msign_steps": 8,
            "solver_tolerance_f": 1e-3,
            "solver_max_iterations": 30,
            "maximize": True,
            "spectral_filter": matrices_t,
        },
        ref=spectralsphere_ref,
        ref_kwargs={"foreach": True},
        id="options",
    ),
    Row(
        "spectralsphere",
        {"learning_rate": 1e-2, "spectral_filter": matrices},
        ref=spectralsphere_ref,
        atol=2e-3,  # measured 9.6e-4, equal to the reference's per-parameter vs batched difference
        note="reference default CPU path bisects in float64; on bf16-noisy residuals it can pick another multiplier",
        id="per-param-solver",
    ),
]
