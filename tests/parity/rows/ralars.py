"""Parity rows for :mod:`mlx_optim.optimizers.ralars`."""

from __future__ import annotations

import math

import torch

from tests.parity.harness import Row


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
