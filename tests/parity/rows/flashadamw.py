"""Parity rows for :mod:`mlx_optim.optimizers.flashadamw`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, loss_and_grads


# ----------------------------------------------------------------------------- FlashAdamW on bf16 parameters
def bf16_runner(row: Row, compiled: bool):
    """The harness's problem with bfloat16 parameters on both sides (master-weight error correction)."""
    init = initial_params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy()).to(torch.bfloat16)) for k, v in init.items()}
    ref = pytorch_optimizer.FlashAdamW(list(tparams.values()), **row.torch_kwargs())
    holder = {"params": {k: mx.array(v).astype(mx.bfloat16) for k, v in init.items()}}
    opt = mlx_optim.load_optimizer(row.name)(**row.kwargs)
    opt.init(holder["params"])

    def step(grads):
        holder["params"] = opt.apply_gradients(grads, holder["params"])

    if compiled:
        state = [holder, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    mine, theirs = [], []
    for t in range(row.steps):
        _, tg = loss_and_grads({k: p.detach().float().numpy() for k, p in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(tg[k]).to(torch.bfloat16)
        ref.step()
        fp32 = ref.get_fp32_model_state_dict(_Holder(tparams))
        theirs.append({k: fp32[k].numpy().copy() for k in tparams})
        _, grads = loss_and_grads({k: np.array(v.astype(mx.float32)) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g).astype(mx.bfloat16) for k, g in grads.items()})
        mx.eval(holder, opt.state)
        mine.append({k: np.array(_master(v, opt.state[k])) for k, v in holder["params"].items()})
    return mine, theirs


class _Holder(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        for k, p in params.items():
            self.register_parameter(k, p)


def _master(p, state):
    """The effective float32 master weight (the bf16 parameter plus its error-correction bits, if any)."""
    from mlx_optim.optimizers.flashadamw import reconstruct_fp32_param  # noqa: PLC0415

    return reconstruct_fp32_param(p, state["error_bits"]) if "error_bits" in state else p.astype(mx.float32)


ROWS = [
    Row("flashadamw", {"learning_rate": 1e-2}, id="defaults"),
    Row(
        "flashadamw",
        {"learning_rate": 2e-2, "betas": (0.8, 0.99), "weight_decay": 0.1, "decouple_lr": True, "eps": 1e-6},
        id="decouple-lr",
    ),
    Row("flashadamw", {"learning_rate": 1e-2, "weight_decay": 0.0, "maximize": True}, id="maximize"),
    Row("flashadamw", {"learning_rate": 1e-2, "quantize": False, "weight_decay": 0.1}, id="fp32-states"),
    Row(
        "flashadamw",
        {"learning_rate": 1e-2, "quantize": False, "decouple_lr": True, "maximize": True},
        id="fp32-states-decouple-max",
    ),
    Row("flashadamw", {"learning_rate": 1e-2}, runner=bf16_runner, id="bf16"),
    Row("flashadamw", {"learning_rate": 1e-2, "quantize": False}, runner=bf16_runner, id="bf16-bf16-states"),
    Row("flashadamw", {"learning_rate": 1e-2, "master_weight_bits": 24}, runner=bf16_runner, id="bf16-master24"),
    Row(
        "flashadamw",
        {"learning_rate": 1e-2, "master_weight_bits": 32, "quantize": False, "weight_decay": 0.1},
        runner=bf16_runner,
        id="bf16-master32",
    ),
]
