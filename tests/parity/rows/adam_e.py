"""Parity rows for mlx_optim/optimizers/adam_e.py: nadamw, sparseadam, tadam, ralars.

nadamw: ``torch.optim.NAdam(decoupled_weight_decay=True)``.
sparseadam: ``torch.optim.SparseAdam`` fed ``p.grad.to_sparse()``; both sides get the
harness gradient with some entries/rows set to exactly zero (the "not looked up" ones),
see :func:`sparse_runner`.
tadam, ralars: holocron is not installable here (numpy<2 pin), so the references are
torch transcriptions of holocron's code (holocron.optim.tadam / ralars,
Copyright (C) 2019-2023 François-Guillaume Fernandez, Apache-2.0), written below.
"""

import math

import numpy as np
import torch

from tests.parity import harness
from tests.parity.harness import Row


# ---------------------------------------------------------------------------- nadamw
def nadamw_ref(params, **kw):
    return torch.optim.NAdam(params, decoupled_weight_decay=True, **kw)


# ---------------------------------------------------------------------------- sparseadam
class SparseAdamRef:
    """``torch.optim.SparseAdam`` stepping on the sparse version of each dense ``p.grad``."""

    def __init__(self, params, **kw):
        self.params = list(params)
        self.opt = torch.optim.SparseAdam(self.params, **kw)

    def step(self, closure=None):
        for p in self.params:
            p.grad = p.grad.to_sparse()
        self.opt.step()


def _zero_some(grads: dict, t: int) -> dict:
    """Set some entries (``a``), rows (``b``) and fibres (``c``) of the step-``t`` gradient to exactly zero."""
    out = {k: g.copy() for k, g in grads.items()}
    out["a"][[i for i in range(7) if (i + t) % 3 == 0]] = 0.0
    out["b"][[i for i in range(5) if (i + t) % 2 == 0]] = 0.0
    for i in range(2):
        for j in range(3):
            if (i + j + t) % 3 == 0:
                out["c"][i, j] = 0.0
    return out


def sparse_runner(row: Row, compiled: bool):
    """Run both sides on gradients with exact zeros (the harness's gradient, some rows zeroed)."""
    original = harness.loss_and_grads

    def masked(params, t):
        loss, grads = original(params, t)
        return loss, _zero_some(grads, t)

    harness.loss_and_grads = masked
    try:
        mine, ref = harness.run_mlx(row, compiled), harness.run_reference(row)
    finally:
        harness.loss_and_grads = original
    # the check is meaningful only if some entries really stayed untouched on some step
    assert any(np.any(a["b"] == b["b"]) for a, b in zip(mine, mine[1:], strict=False))
    return mine, ref


# ---------------------------------------------------------------------------- holocron transcriptions
class HolocronTAdam(torch.optim.Optimizer):
    """Transcription of ``holocron.optim.TAdam`` (code, not docs)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, dof=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, dof=dof))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for param in group["params"]:
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(param)
                    state["W_t"] = beta1 / (1 - beta1) * torch.ones(1, dtype=param.dtype)
                state["step"] += 1
                step, exp_avg, exp_avg_sq, W_t = state["step"], state["exp_avg"], state["exp_avg_sq"], state["W_t"]
                _dof = param.numel() if group["dof"] is None else group["dof"]
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                grad = param.grad
                if wd != 0:
                    grad = grad.add(param, alpha=wd)
                w_t = grad.sub(exp_avg).pow_(2).div_(exp_avg_sq.add(eps)).sum()
                w_t.add_(_dof).pow_(-1).mul_(_dof + param.numel())
                exp_avg.mul_(W_t / (W_t + w_t)).addcdiv_(w_t * grad, W_t + w_t)
                W_t.mul_((2 * beta1 - 1) / beta1)
                W_t.add_(w_t)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if group["amsgrad"]:
                    torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                    denom = (state["max_exp_avg_sq"].sqrt() / math.sqrt(bias_correction2)).add_(eps)
                else:
                    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
                param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)


class HolocronRaLars(torch.optim.Optimizer):
    """Transcription of ``holocron.optim.RaLars`` (with ``force_adaptive_momentum``)."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        force_adaptive_momentum=False,
        scale_clip=None,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.force_adaptive_momentum = force_adaptive_momentum
        self.scale_clip = (0, 10) if scale_clip is None else scale_clip

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            sma_inf = 2 / (1 - beta2) - 1
            for p in group["params"]:
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2 = 1 - beta2 ** state["step"]
                sma_t = sma_inf - 2 * state["step"] * (1 - bias_correction2) / bias_correction2
                update = torch.zeros_like(p)
                if sma_t > 4:
                    r_t = math.sqrt((sma_t - 4) * (sma_t - 2) * sma_inf / ((sma_inf - 4) * (sma_inf - 2) * sma_t))
                    update.addcdiv_(
                        exp_avg / bias_correction1, (exp_avg_sq / bias_correction2).sqrt().add_(group["eps"]), value=r_t
                    )
                elif self.force_adaptive_momentum:
                    update.addcdiv_(
                        exp_avg / bias_correction1, (exp_avg_sq / bias_correction2).sqrt().add_(group["eps"])
                    )
                else:
                    update.add_(exp_avg / bias_correction1)
                if group["weight_decay"] != 0:
                    update.add_(p, alpha=group["weight_decay"])
                p_norm = p.pow(2).sum().sqrt()
                update_norm = update.pow(2).sum().sqrt()
                phi_p = p_norm.clamp(*self.scale_clip)
                local_lr = 1 if phi_p == 0 or update_norm == 0 else phi_p / update_norm
                p.add_(update, alpha=-group["lr"] * local_lr)


ROWS = [
    # nadamw: torch.optim.NAdam(decoupled_weight_decay=True); defaults are the seed's (lr 1e-3, wd 1e-2)
    Row("nadamw", {"learning_rate": 1e-2}, ref=nadamw_ref, ref_kwargs={"weight_decay": 1e-2}),
    Row(
        "nadamw",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "momentum_decay": 1e-2,
            "betas": (0.8, 0.99),
            "eps": 1e-6,
            "maximize": True,
        },
        ref=nadamw_ref,
        id="options-max",
    ),
    # sparseadam: torch.optim.SparseAdam on p.grad.to_sparse(), gradients with exact zeros on both sides
    Row("sparseadam", {"learning_rate": 1e-2}, ref=SparseAdamRef, runner=sparse_runner),
    Row(
        "sparseadam",
        {"learning_rate": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "maximize": True},
        ref=SparseAdamRef,
        runner=sparse_runner,
        id="options-max",
    ),
    # tadam, ralars: holocron transcriptions
    Row("tadam", {"learning_rate": 1e-2}, ref=HolocronTAdam),
    Row(
        "tadam",
        {"learning_rate": 1e-2, "amsgrad": True, "weight_decay": 0.1, "dof": 3.0, "betas": (0.8, 0.99), "eps": 1e-6},
        ref=HolocronTAdam,
        id="ams-l2-dof",
    ),
    Row("ralars", {"learning_rate": 1e-2}, ref=HolocronRaLars),
    Row(
        "ralars",
        {
            "learning_rate": 1e-2,
            "force_adaptive_momentum": True,
            "weight_decay": 0.1,
            "scale_clip": (0.5, 2.0),
            "betas": (0.8, 0.99),
            "eps": 1e-6,
        },
        ref=HolocronRaLars,
        id="forced-wd-clip",
    ),
    Row(
        "ralars",
        {"learning_rate": 1e-2, "scale_clip": (0.0, 1.0), "betas": (0.9, 0.9)},
        ref=HolocronRaLars,
        id="early-rectify-clip",
    ),
]
