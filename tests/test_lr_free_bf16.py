"""Learning-rate-free optimizers train bfloat16 models (issue 18: Prodigy's D stayed at d0 with bf16 parameters).

Prodigy's first steps are ``d0 * lr = 1e-6`` in size, below half a bf16 ulp of any parameter larger than ~1e-3 in
magnitude: rounded back to bf16 the parameters did not move, so ``p0 - p`` (the numerator of the D estimate) stayed 0
and D never grew. Whether a model trained depended on having a parameter small enough to move (both MLPs below had
none; the regression one: loss 0.5508 -> 0.5508 over 300 steps, D = 1e-6; float32: 0.0017, D = 0.021).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_optim as mo

LR_FREE_FAMILIES = ("learning-rate-free",)
LR_FREE = sorted(n for n, c in mo.OPTIMIZERS.items() if c.family in LR_FREE_FAMILIES)
STEPS = 200
# Every optimizer must bring the loss (mean of the last 10% of steps) below this fraction of the first step's. The
# worst measured in bf16 (200 steps, default hyperparameters): 0.16 (DAdaptLion_e, classification), 0.54
# (DAdaptLion, regression); a stalled D estimate leaves the loss where it started (Prodigy before the fix: 1.0 on
# both problems).
MAX_RATIO = 0.75


def classification(seed: int = 2):
    """3 classes from a random linear teacher on 8-d Gaussian inputs; 8-32-3 tanh MLP, cross-entropy."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(8, 3)), axis=1).astype(np.int32)
    mx.random.seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3))
    return model, lambda m, x, y: nn.losses.cross_entropy(m(x), y, reduction="mean"), mx.array(x), mx.array(y)


def regression(seed: int = 0):
    """y = sin(x1 + ... + x4) on 4-d Gaussian inputs; 4-32-1 tanh MLP, mean squared error."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = np.sin(x.sum(axis=1, keepdims=True))
    mx.random.seed(seed)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
    return model, lambda m, x, y: nn.losses.mse_loss(m(x), y), mx.array(x), mx.array(y)


PROBLEMS = {"classification": classification, "regression": regression}


def train_bf16(name: str, problem: str) -> tuple[float, float, mx.array]:
    model, loss_fn, x, y = PROBLEMS[problem]()
    model.set_dtype(mx.bfloat16)
    x = x.astype(mx.bfloat16)
    y = y if y.dtype == mx.int32 else y.astype(mx.bfloat16)
    opt = mo.load_optimizer(name)()  # defaults: no learning rate to tune is the point of these optimizers
    loss_and_grad = mo.value_and_grad(model, loss_fn)
    losses = []
    for _ in range(STEPS):
        loss = opt.step_with(model, loss_and_grad, x, y)
        mx.eval(model.parameters(), opt.state, loss)
        losses.append(loss.item())
    return losses[0], float(np.mean(losses[-STEPS // 10 :])), model


def test_the_families_are_found():
    assert {"prodigy", "dadaptadam", "dadaptsgd", "dadaptlion", "dadaptadan", "dadaptadagrad", "alig"} <= set(LR_FREE)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("name", LR_FREE)
def test_lr_free_optimizer_trains_a_bf16_mlp(name, problem):
    first, final, model = train_bf16(name, problem)
    assert all(p.dtype == mx.bfloat16 for _, p in tree_flatten(model.parameters()))
    assert final < MAX_RATIO * first, (name, problem, first, final)


def test_prodigy_bf16_d_estimate_follows_float32():
    """The D estimate of a bf16 run is the float32 run's within 10% (measured: 0.0208 vs 0.0207 after 300 steps)."""
    ds = {}
    for dtype in (mx.float32, mx.bfloat16):
        model, loss_fn, x, y = regression()
        model.set_dtype(dtype)
        opt = mo.Prodigy()
        lg = mo.value_and_grad(model, loss_fn)
        for _ in range(300):
            opt.step_with(model, lg, x.astype(dtype), y.astype(dtype))
            mx.eval(model.parameters(), opt.state)
        ds[dtype] = opt.globals["d"].item()
    assert ds[mx.float32] > 1e-3  # D grew far from d0 = 1e-6
    assert ds[mx.bfloat16] == pytest.approx(ds[mx.float32], rel=0.1), ds
