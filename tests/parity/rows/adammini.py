"""Parity rows for :mod:`mlx_optim.optimizers.adammini`."""

from __future__ import annotations

import pytorch_optimizer

from tests.parity.harness import Row
from tests.parity.runners.factored import _torch_module, named_runner

# AdamMini: an embedding (plain Adam), per-head q/k projections, a fused QKV weight, a norm (no decay), an MLP.
MINI_SHAPES = {
    "wte.weight": (7, 4),
    "layers.0.attn.q_proj.weight": (4, 4),
    "layers.0.attn.k_proj.weight": (4, 4),
    "layers.0.attn.qkv.weight": (12, 4),
    "layers.0.norm.weight": (4,),
    "layers.0.mlp.weight": (5, 6),
    "layers.0.mlp.bias": (5,),
    "head.w": (2, 3, 4),
}


MINI_DEFAULT_SHAPES = {k: v for k, v in MINI_SHAPES.items() if "attn" not in k}  # no q/k/qkv: default num_heads


def _adammini_ref(named, kw):
    return pytorch_optimizer.AdamMini(_torch_module(named), **kw)


ROWS = [
    # adammini: pytorch_optimizer.AdamMini(model) on named parameters
    Row(
        "adammini",
        {"learning_rate": 1e-2},
        runner=named_runner(MINI_DEFAULT_SHAPES, _adammini_ref),
    ),
    Row(
        "adammini",
        {
            "learning_rate": 1e-2,
            "betas": (0.8, 0.99),
            "weight_decay": 0.2,
            "num_embeds": 4,
            "num_heads": 2,
            "num_query_groups": 1,
            "eps": 1e-6,
            "maximize": True,
        },
        runner=named_runner(MINI_SHAPES, _adammini_ref),
        id="heads-qkv-max",
    ),
    Row(
        "adammini",
        {"learning_rate": 1e-2, "num_embeds": 4, "num_heads": 2, "model_sharding": True},
        runner=named_runner(MINI_SHAPES, _adammini_ref),
        id="heads-sharding-flag",
    ),
]
