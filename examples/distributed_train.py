"""Data-parallel / ZeRO-1 training with mlx_optim over ``mx.distributed``, launched by ``mlx.launch``.

Two processes on this machine (ring backend over loopback)::

    mlx.launch -n 2 --backend ring --python "$PWD/.venv/bin/python" examples/distributed_train.py --mode zero

Several Macs (hostfile; the same Python path and checkout on every host, reachable over ssh)::

    mlx.launch --hostfile hosts.json --python "$PWD/.venv/bin/python" examples/distributed_train.py --mode zero

Every rank trains on its own shard of each global batch; ``--mode dp`` replicates the optimizer state
(any optimizer), ``--mode zero`` shards it (element-wise optimizers), ``--optimizer distributedmuon``
spreads Muon's Newton–Schulz work (always wrapped in DataParallel). ``--save DIR`` writes a checkpoint
at the end (model on rank 0, one optimizer shard per rank); ``--resume DIR`` continues from one, also
with a different number of ranks. Run alone (``python examples/distributed_train.py``) it is one rank.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

import mlx_optim as mo
from mlx_optim import distributed as md


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 4))


def global_batch(step: int, size: int) -> tuple[mx.array, mx.array]:
    """The same synthetic global batch on every rank (a fixed random linear teacher plus noise)."""
    teacher = mx.random.normal((16, 4), key=mx.random.key(0))
    kx, kn = mx.random.split(mx.random.key(1 + step))
    x = mx.random.normal((size, 16), key=kx)
    y = mx.tanh(x @ teacher) + 0.05 * mx.random.normal((size, 4), key=kn)
    return x, y


def loss_fn(model: nn.Module, x: mx.array, y: mx.array) -> mx.array:
    return nn.losses.mse_loss(model(x), y, reduction="mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizer", default="adamw", help="a registered mlx_optim name")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--mode", choices=("dp", "zero"), default="dp")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256, help="global batch, split evenly over the ranks")
    parser.add_argument("--max-grad-norm", type=float, default=None)
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--resume", type=Path, default=None)
    args = parser.parse_args()

    group = mx.distributed.init()  # the launch's backend; a one-process group when run alone
    rank, world = group.rank(), group.size()
    if args.batch_size % world:
        parser.error(f"--batch-size {args.batch_size} is not divisible by the {world} ranks")

    mx.random.seed(0)
    model = build_model()
    md.broadcast_parameters(model, group)  # identical start everywhere (here the seed already ensures it)

    kwargs = {"group": group} if args.optimizer.lower() == "distributedmuon" else {}
    inner = mo.load_optimizer(args.optimizer)(learning_rate=args.learning_rate, **kwargs)
    if args.mode == "zero":
        opt = md.ZeroRedundancyOptimizer(inner, group, max_grad_norm=args.max_grad_norm)
    else:
        opt = md.DataParallel(inner, group, max_grad_norm=args.max_grad_norm)

    start = 0
    if args.resume is not None:
        model.load_weights(str(args.resume / "model.safetensors"))
        md.load_sharded(opt, args.resume, model)  # re-shards when the number of ranks changed
        start = int(opt.step.item())
    else:
        opt.init(model.trainable_parameters())  # state exists before mx.compile traces the step

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    state = [model.state, opt.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x: mx.array, y: mx.array) -> mx.array:
        loss, grads = loss_and_grad(model, x, y)  # this rank's share of the batch
        opt.update(model, grads, loss=loss)  # averaged over the ranks inside
        return loss

    share = args.batch_size // world
    for t in range(start, start + args.steps):
        x, y = global_batch(t, args.batch_size)
        loss = step(x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share])
        mx.eval(loss, state)
        if t % 50 == 0 or t == start + args.steps - 1:
            mean = md.average_loss(loss, group)  # every rank takes part in the collective
            mx.eval(mean)
            if rank == 0:
                print(f"step {t:4d}  loss {mean.item():.5f}  ({world} rank(s), {args.mode}, {args.optimizer})")

    if args.save is not None:
        md.save_sharded(opt, args.save)
        if rank == 0:
            model.save_weights(str(args.save / "model.safetensors"))
        md.barrier(group)
        if rank == 0:
            print(f"saved {args.save}")


if __name__ == "__main__":
    main()
