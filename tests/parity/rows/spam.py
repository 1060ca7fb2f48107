"""Parity rows for :mod:`mlx_optim.optimizers.spam`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytorch_optimizer
import torch

import mlx_optim
from tests.parity.harness import Row, initial_params, loss_and_grads, mlx_stepper


# ----------------------------------------------------------------------------- SPAM masks (random)
def spam_mask_runner(row: Row, compiled: bool):
    """Exact parity of SPAM's masked update given the same masks, plus statistics of our own masks.

    The masks are random on both sides (torch.randperm / torch.rand vs an MLX key), so the
    reference's masks are copied into the MLX state before every step; what is compared
    exactly is all the math given the masks. Our own draws are checked statistically: the
    first mask has exactly ``int(density * numel)`` entries and a redrawn one an entry
    fraction within 4 standard deviations of ``density``.
    """
    _check_spam_mask_statistics(row.kwargs["density"])
    torch.manual_seed(0)
    init = initial_params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    ref = pytorch_optimizer.SPAM(list(tparams.values()), **row.torch_kwargs())
    opt, holder, step = mlx_stepper(row, compiled, init, with_loss=True)
    mine, theirs = [], []
    for t in range(row.steps):
        for k, p in tparams.items():  # the reference's current masks
            if p.ndim == 2:
                opt.state[k]["mask"] = mx.array(ref.state[p]["mask"].numpy())
        _, tgrads = loss_and_grads({k: p.detach().numpy() for k, p in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(tgrads[k].copy())
        ref.step()
        theirs.append({k: p.detach().numpy().copy() for k, p in tparams.items()})
        loss, grads = loss_and_grads({k: np.array(v) for k, v in holder["params"].items()}, t)
        step({k: mx.array(g) for k, g in grads.items()}, mx.array(loss))
        mx.eval(holder, opt.state)
        mine.append({k: np.array(v) for k, v in holder["params"].items()})
    return mine, theirs


def _check_spam_mask_statistics(density: float) -> None:
    shape = (100, 100)
    n = shape[0] * shape[1]
    opt = mlx_optim.SPAM(learning_rate=1e-3, density=density, update_proj_gap=2, seed=3)
    params = {"w": mx.zeros(shape)}
    opt.init(params)
    first = np.array(opt.state["w"]["mask"])
    assert first.sum() == int(density * n), (first.sum(), int(density * n))
    params = opt.apply_gradients({"w": mx.ones(shape)}, params)  # step 1 redraws the mask for step 2
    second = np.array(opt.state["w"]["mask"])
    tol = 4 * np.sqrt(density * (1 - density) / n)
    assert abs(second.mean() - density) < tol, (second.mean(), density)
    assert (first != second).any()


ROWS = [
    # spam (per-parameter path on CPU)
    Row("spam", {"learning_rate": 1e-2}),
    Row(
        "spam",
        {
            "learning_rate": 1e-2,
            "warmup_epoch": 4,
            "update_proj_gap": 6,
            "grad_accu_steps": 2,
            "threshold": 2,
            "weight_decay": 0.1,
            "maximize": True,
        },
        id="resets-clip-max",
    ),
    Row(
        "spam",
        {
            "learning_rate": 1e-2,
            "density": 0.5,
            "update_proj_gap": 7,
            "warmup_epoch": 3,
            "grad_accu_steps": 3,
            "threshold": 5,
            "weight_decay": 0.1,
            "betas": (0.8, 0.99),
        },
        id="masks",
        runner=spam_mask_runner,
        note="random masks: the reference masks are copied into the MLX state each step (exact math parity); our own mask draws are checked statistically",
    ),
]
