"""The main job for now: train a small MLP on generated data with several optimizers and compare them.

    python -m mlx_optim.demo [--steps 300] [--optimizers adamw,lion,...]

Data: two interleaved spirals (generated, no download). Every optimizer starts
from the same initial weights and sees the same batches inside a compiled
training step. Prints a table ranked by final loss.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import mlx.core as mx
import mlx.nn as nn
import numpy as np

import mlx_optim

DEFAULTS = {
    "sgd": {"learning_rate": 0.1, "momentum": 0.9},
    "adam": {"learning_rate": 1e-2},
    "adamw": {"learning_rate": 1e-2},
    "nadam": {"learning_rate": 1e-2},
    "radam": {"learning_rate": 1e-2},
    "rmsprop": {"learning_rate": 3e-3},
    "adagrad": {"learning_rate": 5e-2},
    "adamax": {"learning_rate": 1e-2},
    "adadelta": {"learning_rate": 1.0},
    "lion": {"learning_rate": 1e-3},
    "tiger": {"learning_rate": 1e-3},
    "rprop": {"learning_rate": 1e-3},
}


def spirals(n: int = 512, seed: int = 0) -> tuple[mx.array, mx.array]:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.25, 1.0, size=n) * 3 * math.pi
    label = rng.integers(0, 2, size=n)
    angle = t + label * math.pi
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3 * math.pi)
    x += rng.normal(scale=0.02, size=x.shape)
    return mx.array(x.astype(np.float32)), mx.array(label.astype(np.int32))


class MLP(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.layers = [nn.Linear(2, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 2)]

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = mx.tanh(layer(x))
        return self.layers[-1](x)


def loss_fn(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def train(name: str, kwargs: dict, steps: int, batch: int = 128) -> dict:
    x, y = spirals()
    mx.random.seed(0)
    model = MLP()
    opt = mlx_optim.load_optimizer(name)(**kwargs)
    lg = nn.value_and_grad(model, loss_fn)
    state = [model.state, opt.state]
    step = mx.compile(lambda xb, yb: opt.step_with(model, lg, xb, yb), inputs=state, outputs=state)
    rng = np.random.default_rng(1)
    losses = []
    start = 0.0
    for i in range(steps):
        if i == 1:  # time from the second step: the first one traces and compiles
            start = time.perf_counter()
        idx = mx.array(rng.integers(0, x.shape[0], size=batch))
        loss = step(x[idx], y[idx])
        mx.eval(state, loss)
        losses.append(loss.item())
    elapsed = time.perf_counter() - start
    acc = mx.mean(mx.argmax(model(x), axis=1) == y).item()
    return {
        "optimizer": name,
        "first": losses[0],
        "final": float(np.mean(losses[-10:])),
        "best": min(losses),
        "accuracy": acc,
        "ms_per_step": 1000 * elapsed / max(steps - 1, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--optimizers", default="sgd,adam,adamw,nadam,radam,rmsprop,adamax,lion,tiger")
    args = parser.parse_args(argv)
    names = [n.strip().lower() for n in args.optimizers.split(",") if n.strip()]
    for n in names:
        try:
            mlx_optim.load_optimizer(n)
        except ValueError as e:  # one line, with the close matches
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(f"Two-spirals MLP, {args.steps} compiled steps per optimizer, mlx_optim {mlx_optim.__version__}")
    results = []
    for n in names:
        results.append(train(n, DEFAULTS.get(n, {"learning_rate": 1e-3}), args.steps))
        r = results[-1]
        print(f"  {n:<12} final loss {r['final']:.4f}")
    results.sort(key=lambda r: r["final"])
    header = f"{'rank':>4}  {'optimizer':<12} {'first':>8} {'final':>8} {'best':>8} {'accuracy':>9} {'ms/step':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for i, r in enumerate(results, 1):
        print(
            f"{i:>4}  {r['optimizer']:<12} {r['first']:>8.4f} {r['final']:>8.4f} {r['best']:>8.4f}"
            f" {r['accuracy']:>9.3f} {r['ms_per_step']:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
