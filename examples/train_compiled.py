"""A training loop with nn.value_and_grad and a compiled step, with any registered optimizer.

python examples/train_compiled.py [--optimizer adamw] [--steps 200]
"""

import argparse

import mlx.core as mx
import mlx.nn as nn

import mlx_optim as mo


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)

    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2))
    opt = mo.load_optimizer(args.optimizer)(learning_rate=args.learning_rate)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    state = [model.state, opt.state]

    def step(x, y):
        loss, grads = loss_and_grad(model, x, y)
        opt.update(model, grads)
        return loss

    step = mx.compile(step, inputs=state, outputs=state)
    x = mx.random.normal((256, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(mx.int32)
    first = None
    for _ in range(args.steps):
        loss = step(x, y)
        mx.eval(state, loss)
        first = loss.item() if first is None else first
    print(f"{args.optimizer}: loss {first:.4f} -> {loss.item():.4f}")
    return 0 if loss.item() < first else 1


if __name__ == "__main__":
    raise SystemExit(main())
