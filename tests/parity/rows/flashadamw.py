"""Parity rows for :mod:`mlx_optim.optimizers.flashadamw`."""

from __future__ import annotations

import pytorch_optimizer
import torch

from tests.parity.harness import Portable, Row, initial_params, loss_and_grads


# ----------------------------------------------------------------------------- FlashAdamW on bf16 parameters
def _bf16_reference(row: Row):
    """The harness's problem with bfloat16 parameters on both sides (master-weight error correction): the
    reference's float32 master weights (``get_fp32_model_state_dict``), ours reconstructed from the bf16
    parameter and its error bits (program options ``param_dtype="bfloat16"``, ``record="master"``)."""
    init = initial_params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy()).to(torch.bfloat16)) for k, v in init.items()}
    ref = pytorch_optimizer.FlashAdamW(list(tparams.values()), **row.torch_kwargs())
    theirs = []
    for t in range(row.steps):
        _, tg = loss_and_grads({k: p.detach().float().numpy() for k, p in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(tg[k]).to(torch.bfloat16)
        ref.step()
        fp32 = ref.get_fp32_model_state_dict(_Holder(tparams))
        theirs.append({k: fp32[k].numpy().copy() for k in tparams})
    return theirs


bf16_runner = Portable("standard", _bf16_reference, {"with_loss": False, "param_dtype": "bfloat16", "record": "master"})


class _Holder(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        for k, p in params.items():
            self.register_parameter(k, p)


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
