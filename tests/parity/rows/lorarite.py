"""Parity rows for :mod:`mlx_optim.optimizers.lorarite`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
from mlx.utils import tree_flatten, tree_unflatten

import mlx_optim
from tests.parity.harness import Row, scale

# ---------------------------------------------------------------------------- LoRARite: LoRA factor pairs
# Leaves are paired by name (``<prefix>.lora_a`` with ``<prefix>.lora_b``, see LoRARite's docstring); the reference
# pairs by position, so it gets the pairs' factors in order ``a0, b0, a1, b1`` followed by one unpaired leaf
# ``bias`` (which it skips). ``solo.lora_a`` has no partner: the MLX side must leave it unchanged (the reference
# never sees it, so its reference trajectory is its initial value).
LORA_LAYOUTS = {
    # PEFT layout (the reference's defaults lora_l_dim=0, lora_r_dim=-1): A (r, in...), B (out, r)
    "peft": {"l0.a": (3, 8), "l0.b": (6, 3), "l1.a": (2, 3, 4), "l1.b": (5, 2), "bias": (4,), "solo.a": (2, 5)},
    # mlx-lm layout (lora_l_dim=-1, lora_r_dim=0): lora_a (in, r), lora_b (r, out...)
    "mlx": {"l0.a": (8, 3), "l0.b": (3, 6), "l1.a": (4, 2), "l1.b": (2, 3, 5), "bias": (4,), "solo.a": (5, 2)},
}


def _lora_runner(layout: str):
    def runner(row: Row, compiled: bool):
        import torch

        names = row.kwargs.get("lora_names", ("lora_a", "lora_b"))
        rename = {"a": names[0], "b": names[1]}
        shapes = {".".join(rename.get(part, part) for part in k.split(".")): s for k, s in LORA_LAYOUTS[layout].items()}
        rng = np.random.default_rng(0)
        init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        target = {k: rng.normal(size=s) for k, s in shapes.items()}
        noise = [{k: rng.normal(scale=0.5, size=s) for k, s in shapes.items()} for _ in range(row.steps)]

        def grads(params, t):
            s = scale(t)
            return {
                k: (s * ((p - target[k]) + 0.3 * np.sin(3 * p) + noise[t][k])).astype(np.float32)
                for k, p in params.items()
            }

        # reference
        tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
        kw = {k: v for k, v in row.torch_kwargs().items() if k != "lora_names"}
        opt = pytorch_optimizer.LoRARite([p for k, p in tparams.items() if not k.startswith("solo")], **kw)
        ref = []
        for t in range(row.steps):
            for k, g in grads({k: p.detach().numpy() for k, p in tparams.items()}, t).items():
                tparams[k].grad = torch.from_numpy(g)
            opt.step()
            ref.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
        for step in ref:
            step[f"solo.{names[0]}"] = init[f"solo.{names[0]}"]

        # mlx
        holder = {"params": tree_unflatten([(k, mx.array(v)) for k, v in init.items()])}
        mopt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
        mopt.init(holder["params"])

        def step_fn(g):
            holder["params"] = mopt.apply_gradients(g, holder["params"])

        if compiled:
            st = [holder, mopt.state]
            step_fn = mx.compile(step_fn, inputs=st, outputs=st)
        mine = []
        for t in range(row.steps):
            flat = {k: np.array(v) for k, v in tree_flatten(holder["params"])}
            step_fn(tree_unflatten([(k, mx.array(g)) for k, g in grads(flat, t).items()]))
            mx.eval(holder, mopt.state)
            mine.append({k: np.array(v) for k, v in tree_flatten(holder["params"])})
        return mine, ref

    return runner


_PEFT, _MLX = _lora_runner("peft"), _lora_runner("mlx")


_MLX_DIMS = {"lora_l_dim": -1, "lora_r_dim": 0}


ROWS = [
    Row("lorarite", {"learning_rate": 1e-2}, id="default-peft", runner=_PEFT),
    Row("lorarite", {"learning_rate": 1e-2, **_MLX_DIMS}, id="default-mlx", runner=_MLX),
    # update_skipping=0 and a larger lr: the bases rotate enough for the escape term to matter (measured: ~350x the
    # tolerance when it is dropped)
    Row(
        "lorarite",
        {
            "learning_rate": 5e-2,
            "eps": 1e-1,
            "relative_epsilon": True,
            "update_skipping": 0.0,
            "apply_escape": True,
            **_MLX_DIMS,
        },
        id="escape-relative",
        runner=_MLX,
    ),
    Row(
        "lorarite",
        {
            "learning_rate": 5e-2,
            "betas": (0.8, 0.95),
            "update_skipping": 0.0,
            "weight_decay": 1e-1,
            "balance_param": True,
            "update_capping": 0.5,
        },
        id="balance-cap-decay",
        runner=_PEFT,
    ),
    Row(
        "lorarite",
        {
            "learning_rate": 1e-2,
            "clip_unmagnified_grad": 0.0,
            "update_skipping": 0.0,
            "maybe_inf_to_nan": False,
            "maximize": True,
            "lora_names": ("down", "up"),
        },
        id="noclip-noskip-maximize-names",
        runner=_PEFT,
    ),
    Row(
        "lorarite",
        {"learning_rate": 5e-2, "clip_unmagnified_grad": 5.0, "update_skipping": 3.0},
        id="clip5-skip3",
        runner=_PEFT,
    ),
]
