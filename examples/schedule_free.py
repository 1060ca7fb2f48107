"""Schedule-free AdamW: no learning-rate schedule, and evaluate at the averaged weights.

    python examples/schedule_free.py [--steps 300]

Schedule-free optimizers train at one point (y) and keep an average (x) that is the model to evaluate. Call
``opt.eval(model)`` before evaluating (switches the weights to x) and ``opt.train(model)`` before training
again; both are cheap in-place swaps. The script trains the spirals MLP, evaluating every 100 steps, and
prints the loss at the training point and at the averaged point.
"""

from __future__ import annotations

import argparse

import mlx.core as mx

import mlx_optim as mo
from mlx_optim import tasks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)

    setup = tasks.get_task("spirals").build(0)
    model = setup.model
    x_all, y_all = tasks.spirals()
    opt = mo.load_optimizer("schedulefreeadamw")(learning_rate=2e-2, warmup_steps=20)
    loss_and_grad = mo.value_and_grad(model, setup.loss_fn)
    opt.init(model.trainable_parameters())
    state = [model.state, opt.state]
    step = mx.compile(lambda x, y: opt.step_with(model, loss_and_grad, x, y), inputs=state, outputs=state)

    first = setup.loss_fn(model, x_all, y_all).item()
    for i in range(1, args.steps + 1):
        loss = step(*next(setup.batches))
        mx.eval(state, loss)
        if i % 100 == 0 or i == args.steps:
            at_y = setup.loss_fn(model, x_all, y_all).item()
            opt.eval(model)  # the averaged weights x: the model to evaluate and to save
            at_x = setup.loss_fn(model, x_all, y_all).item()
            opt.train(model)  # back to the training point y
            print(f"step {i:4d}  full-data loss at y {at_y:.4f}  at x (eval) {at_x:.4f}")
    opt.eval(model)
    final = setup.loss_fn(model, x_all, y_all).item()
    print(f"loss {first:.4f} -> {final:.4f} (averaged weights)")
    return 0 if final < first else 1


if __name__ == "__main__":
    raise SystemExit(main())
