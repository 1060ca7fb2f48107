"""Parity rows for :mod:`mlx_optim.optimizers.sophia`."""

from __future__ import annotations

import torch

from tests.parity.harness import Row
from tests.parity.runners.curvature import GNB_BATCH, STATS_NOTE, e2e_runner, inject_runner, stats_compare, stats_runner


# ---------------------------------------------------------------------------- SophiaG reference
class SophiaGReference(torch.optim.Optimizer):
    """The official SophiaG (github.com/Liuhong99/Sophia, ``sophia.py``, non-capturable path).

    ``update_hessian()`` keeps ``h <- b2 h + (1 - b2) p.grad**2`` from the
    sampled-label gradient in ``p.grad``; ``step()`` does
    ``p <- p (1 - lr wd)``, ``m <- b1 m + (1 - b1) g``,
    ``p <- p - lr sign(m) min(|m| / (rho bs h + 1e-15), 1)``. Added, with
    pytorch_optimizer's ``apply_weight_decay`` semantics: ``weight_decouple=False``
    (L2 in the gradient) and ``fixed_decay`` (decay without ``lr``).
    ``update_period`` is the training loop's business (kept for the runners).
    """

    def __init__(
        self,
        params,
        lr=1e-4,
        betas=(0.965, 0.99),
        rho=0.04,
        weight_decay=1e-1,
        weight_decouple=True,
        fixed_decay=False,
        update_period=10,
        maximize=False,
        bs=GNB_BATCH,
    ):
        self.update_period = update_period
        self.bs = bs
        defaults = dict(
            lr=lr,
            betas=betas,
            rho=rho,
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _state(self, p):
        state = self.state[p]
        if len(state) == 0:
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self):
        for group in self.param_groups:
            _, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is not None:
                    self._state(p)["hessian"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, _ = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad.clone()
                state = self._state(p)
                if wd != 0:
                    if group["weight_decouple"]:
                        p.mul_(1 - wd * (1.0 if group["fixed_decay"] else lr))
                    else:
                        grad.add_(p, alpha=wd)
                exp_avg, hess = state["exp_avg"], state["hessian"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                ratio = (exp_avg.abs() / (group["rho"] * self.bs * hess + 1e-15)).clamp(None, 1)
                p.addcmul_(exp_avg.sign(), ratio, value=-lr)


_SOPHIAG_REF = {"ref": SophiaGReference}


ROWS = [
    # sophiah: pytorch_optimizer.SophiaH (default probes are Gaussian: exact rows inject the estimate)
    Row("sophiah", {"learning_rate": 6e-2}, runner=inject_runner, id="inject"),
    Row(
        "sophiah",
        {
            "learning_rate": 3e-2,
            "betas": (0.9, 0.95),
            "weight_decay": 0.1,
            "weight_decouple": False,
            "p": 0.05,
            "update_period": 3,
            "eps": 1e-3,
        },
        runner=inject_runner,
        id="inject-l2-clip-period",
    ),
    Row(
        "sophiah",
        {
            "learning_rate": 3e-2,
            "weight_decay": 0.1,
            "fixed_decay": True,
            "p": 0.5,
            "update_period": 4,
            "num_samples": 2,
            "hessian_distribution": "rademacher",
            "maximize": True,
        },
        runner=e2e_runner,
        id="e2e-rademacher-fixed-max",
    ),
    Row(
        "sophiah",
        {"learning_rate": 6e-2, "p": 1.0, "update_period": 5, "hessian_distribution": "rademacher"},
        runner=e2e_runner,
        id="e2e-rademacher",
    ),
    Row(
        "sophiah",
        {"learning_rate": 0.0, "betas": (0.9, 0.0), "update_period": 1, "num_samples": 2},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-gaussian",
    ),
    Row(
        "sophiah",
        {"learning_rate": 0.0, "betas": (0.9, 0.0), "update_period": 1, "hessian_distribution": "rademacher"},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-rademacher",
    ),
    # sophiag: official SophiaG (torch transcription above)
    Row("sophiag", {"learning_rate": 1e-2}, runner=inject_runner, id="inject", **_SOPHIAG_REF),
    Row("sophiag", {"learning_rate": 1e-2}, runner=e2e_runner, id="e2e", **_SOPHIAG_REF),
    Row(
        "sophiag",
        {
            "learning_rate": 1e-2,
            "betas": (0.9, 0.95),
            "rho": 0.1,
            "weight_decay": 0.05,
            "weight_decouple": False,
            "update_period": 3,
            "maximize": True,
        },
        runner=e2e_runner,
        id="e2e-l2-period-max",
        **_SOPHIAG_REF,
    ),
    Row(
        "sophiag",
        {"learning_rate": 1e-2, "weight_decay": 0.2, "fixed_decay": True, "rho": 0.01, "update_period": 2},
        runner=inject_runner,
        id="inject-fixed",
        **_SOPHIAG_REF,
    ),
    Row(
        "sophiag",
        {"learning_rate": 0.0, "betas": (0.9, 0.0), "weight_decay": 0.0, "update_period": 1, "seed": 5},
        runner=stats_runner,
        compare=stats_compare,
        note=STATS_NOTE,
        id="stats-gnb",
        **_SOPHIAG_REF,
    ),
]
