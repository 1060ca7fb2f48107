"""Parity rows for :mod:`mlx_optim.optimizers.ranger`."""

from __future__ import annotations

import math

import pytorch_optimizer
import pytorch_ranger
import torch

from tests.parity.harness import Row


def _centralize(x: torch.Tensor, conv_only: bool) -> torch.Tensor:
    if x.dim() > (3 if conv_only else 1):
        return x - x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return x


class RangerGcLoc(torch.optim.Optimizer):
    """Transcription of pytorch_optimizer 4.1.0 ``Ranger._step_per_param`` plus ``gc_loc``."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.95, 0.999),
        alpha=0.5,
        k=6,
        n_sma_threshold=5,
        degenerated_to_sgd=False,
        weight_decay=0.0,
        weight_decouple=True,
        fixed_decay=False,
        use_gc=True,
        gc_conv_only=False,
        eps=1e-5,
        maximize=False,
        gc_loc=True,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, alpha=alpha, k=k, weight_decay=weight_decay, eps=eps))
        self.n_sma_threshold, self.degenerated_to_sgd = n_sma_threshold, degenerated_to_sgd
        self.weight_decouple, self.fixed_decay, self.maximize = weight_decouple, fixed_decay, maximize
        self.use_gc, self.gc_conv_only, self.gc_loc = use_gc, gc_conv_only, gc_loc
        self.t = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        t = self.t
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            n_sma_max = 2.0 / (1.0 - beta2) - 1.0
            beta2_t = beta2**t
            n_sma = n_sma_max - 2 * t * beta2_t / (1.0 - beta2_t)
            rectified = n_sma >= self.n_sma_threshold
            if rectified:
                rt = math.sqrt(
                    (1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2)
                )
            else:
                rt = 1.0 if self.degenerated_to_sgd else -1.0
            step_size = lr * rt / (1 - beta1**t)
            for p in group["params"]:
                grad = -p.grad if self.maximize else p.grad.clone()
                state = self.state[p]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                    state["slow_buffer"] = p.clone()
                if self.use_gc and self.gc_loc:
                    grad = _centralize(grad, self.gc_conv_only)
                if wd != 0:
                    if self.weight_decouple:
                        p.mul_(1.0 - wd * (1.0 if self.fixed_decay else lr))
                    else:
                        grad = grad + wd * p
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                direction = m / (v.sqrt() + group["eps"]) if rectified else m.clone()
                if self.use_gc and not self.gc_loc:
                    direction = _centralize(direction, self.gc_conv_only)
                p.add_(direction, alpha=-step_size)
                if t % group["k"] == 0:
                    state["slow_buffer"].lerp_(p, group["alpha"])
                    p.copy_(state["slow_buffer"])


R = pytorch_optimizer.Ranger


ROWS = [
    # ranger: pytorch_optimizer.Ranger
    Row("ranger", {"learning_rate": 1e-2}),
    Row(
        "ranger",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "degenerated_to_sgd": True,
            "adam_debias": True,
            "adanorm": True,
            "k": 3,
            "alpha": 0.7,
            "betas": (0.9, 0.99),
        },
        id="sgd-debias-adanorm",
    ),
    Row(
        "ranger",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "gc_conv_only": True,
            "n_sma_threshold": 4,
            "maximize": True,
        },
        id="l2-gcconv-max",
    ),
    Row(
        "ranger",
        {
            "learning_rate": 1e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "use_gc": False,
            "eps": 1e-8,
            "adanorm": True,
            "adanorm_r": 0.8,
        },
        id="fixed-nogc",
    ),
    # ranger2020: Ranger + gc_loc
    Row("ranger2020", {"learning_rate": 1e-2}, ref=R),
    Row("ranger2020", {"learning_rate": 1e-2, "gc_loc": False}, ref=RangerGcLoc, id="gc-update"),
    Row(
        "ranger2020",
        {
            "learning_rate": 1e-2,
            "gc_loc": False,
            "weight_decay": 0.1,
            "weight_decouple": False,
            "degenerated_to_sgd": True,
            "k": 4,
            "maximize": True,
        },
        ref=RangerGcLoc,
        id="gc-update-l2-sgd",
    ),
    Row(
        "ranger2020",
        {"learning_rate": 1e-2, "gc_loc": True, "weight_decay": 0.1, "fixed_decay": True, "betas": (0.9, 0.99)},
        ref=RangerGcLoc,
        id="transcription-check",
    ),
    # rangerqh: pytorch_ranger.RangerQH
    Row("rangerqh", {"learning_rate": 1e-2}, ref=pytorch_ranger.RangerQH),
    Row(
        "rangerqh",
        {"learning_rate": 1e-2, "nus": (0.8, 0.9), "weight_decay": 0.1, "k": 3, "alpha": 0.6},
        ref=pytorch_ranger.RangerQH,
        id="l2-nus",
    ),
    Row(
        "rangerqh",
        {"learning_rate": 1e-2, "decouple_weight_decay": True, "weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6},
        ref=pytorch_ranger.RangerQH,
        id="decoupled",
    ),
    # rangerva: pytorch_ranger.RangerVA
    Row("rangerva", {"learning_rate": 1e-2}, ref=pytorch_ranger.RangerVA),
    Row(
        "rangerva",
        {
            "learning_rate": 1e-2,
            "amsgrad": False,
            "grad_transformer": "abs",
            "weight_decay": 0.1,
            "smooth": 10.0,
            "k": 3,
            "n_sma_threshhold": 4,
        },
        ref=pytorch_ranger.RangerVA,
        id="abs-wd",
    ),
    Row(
        "rangerva",
        {"learning_rate": 1e-1, "transformer": "none", "eps": 1e-6, "alpha": 0.3, "betas": (0.9, 0.99)},
        ref=pytorch_ranger.RangerVA,
        id="no-softplus",
    ),
]
