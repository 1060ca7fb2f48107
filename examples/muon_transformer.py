"""Muon on a small transformer, with its AdamW fallback for embeddings, norms, biases and the output head.

    python examples/muon_transformer.py [--steps 150]

Muon orthogonalizes the momentum of hidden-layer matrices (Newton-Schulz); the parameters it should not touch
get AdamW inside the same optimizer. Which is which is decided per parameter path by ``muon_filter``: the
default sends every matrix whose path has no "embed" to Muon; here the output head is sent to AdamW too, as
the Muon paper recommends. The model is mlx_optim.tasks' tiny character-level transformer on its generated
corpus; the script prints the split, then the loss against plain AdamW from the same initial weights.
"""

from __future__ import annotations

import argparse

import mlx.core as mx
from mlx.utils import tree_flatten

import mlx_optim as mo
from mlx_optim import tasks
from mlx_optim.optimizers.muon import default_muon_filter


def muon_filter(path: str, parameter: mx.array) -> bool:
    return default_muon_filter(path, parameter) and not path.startswith("head")


def train(opt, steps: int) -> list[float]:
    setup = tasks.get_task("tiny-lm").build(0)  # same weights and batches for every optimizer
    model = setup.model
    loss_and_grad = mo.value_and_grad(model, setup.loss_fn)
    opt.init(model.trainable_parameters())
    state = [model.state, opt.state]
    step = mx.compile(lambda x, y: opt.step_with(model, loss_and_grad, x, y), inputs=state, outputs=state)
    losses = []
    for _ in range(steps):
        loss = step(*next(setup.batches))
        mx.eval(state, loss)
        losses.append(loss.item())
    return losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args(argv)

    params = tasks.get_task("tiny-lm").build(0).model.trainable_parameters()
    flat = tree_flatten(params)
    to_muon = [p for p, v in flat if muon_filter(p, v)]
    print(f"Muon:  {len(to_muon)} matrices, {sum(v.size for p, v in flat if p in to_muon):,} parameters")
    print(f"AdamW: {len(flat) - len(to_muon)} tensors (embeddings, norms, biases, head)")

    muon = mo.Muon(learning_rate=2e-2, adamw_lr=3e-3, muon_filter=muon_filter)
    results = {
        "muon + adamw fallback": train(muon, args.steps),
        "adamw": train(mo.AdamW(learning_rate=3e-3), args.steps),
    }
    tail = max(1, args.steps // 10)
    for name, losses in results.items():
        print(f"{name:<22} loss {losses[0]:.3f} -> {sum(losses[-tail:]) / tail:.3f}")
    first, last = results["muon + adamw fallback"][0], results["muon + adamw fallback"][-tail:]
    return 0 if sum(last) / tail < first - 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
