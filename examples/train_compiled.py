"""A compiled training loop that runs any registered optimizer with one calling convention: ``step_with``.

python examples/train_compiled.py [--optimizer adamw|lbfgs|sam|sam:sgd|...] [--learning-rate 1e-2] [--steps 200]

``loss = opt.step_with(model, loss_and_grad, *batch)`` evaluates the loss and gradient itself, as often as the
optimizer needs: once for Adam and most others, twice for SAM (at the weights, then at the perturbed weights),
several times for L-BFGS (its line search), with Hessian-vector products for AdaHessian / SophiaH. Build
``loss_and_grad`` with ``mlx_optim.value_and_grad(model, loss_fn)`` (``nn.value_and_grad``'s twin that also keeps
``loss_fn`` for those optimizers). The whole step is ``mx.compile``d, except for optimizers whose step cannot be
traced (``opt.compilable`` is False: L-BFGS decides in Python how many evaluations to make); for them the
loss-and-gradient evaluation is compiled instead (``value_and_grad(..., compile=True)``).
"""

import argparse

import mlx.core as mx
import mlx.nn as nn

import mlx_optim as mo
from mlx_optim.tasks import make_optimizer


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--optimizer", default="adamw", help="a registered name (mlx-optim list), or wrapper:inner (sam:sgd)"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)

    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2))
    # load_optimizer(name)(learning_rate=...) for a plain name; make_optimizer also builds wrappers around their inner
    # optimizer ("sam" wraps adamw, "sam:sgd" sgd), the learning rate going to the inner one
    opt = make_optimizer(args.optimizer, args.learning_rate)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    compilable = getattr(opt, "compilable", True)
    loss_and_grad = mo.value_and_grad(model, loss_fn, compile=not compilable)
    opt.init(model.trainable_parameters())  # the state's structure is fixed before tracing
    state = [model.state, opt.state]

    def step(x, y):
        return opt.step_with(model, loss_and_grad, x, y)

    if compilable:
        step = mx.compile(step, inputs=state, outputs=state)
    x = mx.random.normal((256, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(mx.int32)
    first = None
    for _ in range(args.steps):
        loss = step(x, y)
        mx.eval(state, loss)
        first = loss.item() if first is None else first
    last = loss_fn(model, x, y).item()  # after the last step (step_with returns the loss before it)
    print(f"{args.optimizer}: loss {first:.4f} -> {last:.4f}")
    return 0 if last < first else 1


if __name__ == "__main__":
    raise SystemExit(main())
