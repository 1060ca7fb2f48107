"""SAM in MLX, both ways: two gradient evaluations per step, or "transparent" inside a one-update trainer.

A small MLP classifies two noisy interleaved spirals. Four runs, each a compiled training step
(``mx.compile(step, inputs=[model.state, opt.state], outputs=...)``):

* ``adamw``                 -- the baseline, ``opt.update(model, grads)``;
* ``sam(adamw)``            -- ``loss = opt.step_with(model, loss_and_grad, x, y)`` (perturb, re-evaluate, step);
* ``sam(lookahead(adamw))`` -- the same with Lookahead inside SAM (one Lookahead step per SAM step);
* ``sam transparent``       -- ``SAM(..., transparent=True)`` through ordinary ``opt.update`` calls, as in
  mlx-lm's trainer: odd calls perturb, even calls restore and descend (each batch is fed twice here, so it
  does the same work as ``step_with``).

Run: ``python examples/sam.py [--steps 200]``
"""

from __future__ import annotations

import argparse
import time

import mlx.core as mx
import mlx.nn as nn
import numpy as np

import mlx_optim as mo
from mlx_optim.wrappers import SAM, Lookahead


def spirals(n: int, noise: float, seed: int) -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(size=n)) * 3 * np.pi
    label = rng.integers(0, 2, size=n)
    sign = np.where(label == 0, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (3 * np.pi)
    x = x + noise * rng.normal(size=x.shape)
    flip = rng.uniform(size=n) < 0.1  # 10% label noise: where flat minima pay off
    label = np.where(flip, 1 - label, label)
    return mx.array(x.astype(np.float32)), mx.array(label)


def make_model() -> nn.Module:
    mx.random.seed(0)
    return nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))


def loss_fn(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def accuracy(model, x, y) -> float:
    return (mx.argmax(model(x), axis=1) == y).mean().item()


def train(kind: str, steps: int, data, test) -> tuple[float, float, float]:
    model = make_model()
    lg = nn.value_and_grad(model, loss_fn)
    x, y = data
    if kind == "adamw":
        opt = mo.AdamW(learning_rate=1e-2)

        def step(x, y):
            loss, grads = lg(model, x, y)
            opt.update(model, grads)
            return loss

    elif kind in ("sam(adamw)", "sam(lookahead(adamw))"):
        inner = mo.AdamW(learning_rate=1e-2)
        opt = SAM(inner if kind == "sam(adamw)" else Lookahead(inner, k=5, alpha=0.5), rho=0.05)

        def step(x, y):
            return opt.step_with(model, lg, x, y)

    else:  # transparent: one update per call, two calls per batch
        opt = SAM("adamw", rho=0.05, learning_rate=1e-2, transparent=True)

        def one_update(x, y):
            loss, grads = lg(model, x, y)
            opt.update(model, grads)
            return loss

        state = [model.state, opt.state]
        one_update = mx.compile(one_update, inputs=state, outputs=state)

        def step(x, y):
            loss = one_update(x, y)  # perturb: the loss at the current weights
            one_update(x, y)  # restore and descend with the gradient at the perturbed weights
            return loss

    if kind != "sam transparent":
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
        mx.eval(model.parameters(), opt.state, loss)
    elapsed = time.perf_counter() - start
    return loss_fn(model, x, y).item(), accuracy(model, *test), elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    data, test = spirals(512, 0.03, seed=0), spirals(2048, 0.03, seed=1)
    print(f"{'optimizer':<24}{'train loss':>12}{'test acc':>10}{'time':>8}")
    for kind in ("adamw", "sam(adamw)", "sam(lookahead(adamw))", "sam transparent"):
        loss, acc, elapsed = train(kind, args.steps, data, test)
        print(f"{kind:<24}{loss:>12.4f}{acc:>10.3f}{elapsed:>7.2f}s")


if __name__ == "__main__":
    main()
