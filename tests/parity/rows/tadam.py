"""Parity rows for :mod:`mlx_optim.optimizers.tadam`."""

from __future__ import annotations

import math

import torch

from tests.parity.harness import Row


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


ROWS = [
    # tadam, ralars: holocron transcriptions
    Row("tadam", {"learning_rate": 1e-2}, ref=HolocronTAdam),
    Row(
        "tadam",
        {"learning_rate": 1e-2, "amsgrad": True, "weight_decay": 0.1, "dof": 3.0, "betas": (0.8, 0.99), "eps": 1e-6},
        ref=HolocronTAdam,
        id="ams-l2-dof",
    ),
]
