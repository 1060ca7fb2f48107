"""Peak memory of one optimizer step, and optimizer-state bytes per parameter, for float32 / bfloat16 / int8 / int4
state and the factored optimizers, against mlx.optimizers.AdamW: all in one process, the peak reset between runs.

    python benchmarks/peak_memory.py [--trees tiny-lm,lora,large] [--steps 5] [--json out.json]

Trees: ``tiny-lm`` (the built-in task's 2-layer transformer, ~105K parameters, a real batch: forward, backward
and update), ``lora`` (224 LoRA leaves alternating 8x2048 and 2048x8, ~3.7M parameters, as in
benchmarks/step_time.py) and ``large`` (six 2048x2048 matrices, ~25.2M parameters); the last two take random
gradients. Optimizers: ``mlx.optimizers.AdamW`` (``mlx``), ``mlx_optim.AdamW`` with float32, bfloat16, int8 and int4
state (and int8 quantized in parts of 4096 elements: ``QuantizedState.chunk_size``), and ``Adafactor``, ``CAME``,
``AdamMini`` (their defaults).

Columns (MB unless said otherwise):

* ``state B/p``: bytes of per-parameter state (global scalars and keys excluded) per parameter;
* ``before``: active memory before the update (parameters, gradients, state, and for tiny-lm the model's other
  arrays); ``peak``: ``mx.get_peak_memory()`` during ``apply_gradients`` + ``mx.eval`` (after a warm-up step, so
  tracing and compilation are not counted); ``transient = peak - before``;
* ``new p+s``: the bytes the step must write because nothing is updated in place (new parameters and new state);
  ``extra = transient - new p+s``: the step's working memory beyond its outputs (for quantized state: the
  dequantized float32 moments and the quantizer's temporaries);
* ``opt mem = state + transient``: what the optimizer holds at the update's peak beyond the parameters, the
  gradients and the model's other arrays (its state, old and new, and its working memory; the new parameters
  take the old ones' buffers once nothing else holds them, as in a training loop), and ``x mlx`` its ratio to
  ``mlx.optimizers.AdamW``'s; ``before``, ``peak`` and ``transient`` are medians over three measured steps (the
  peak depends a little on the timing of MLX's CPU worker threads);
* for tiny-lm, ``train peak``: the peak of a whole compiled training step (loss, gradients and update) and
  ``sgd peak``: the same step with ``mlx.optimizers.SGD`` (no state; its update writes the new parameters, as
  every optimizer's does): parameters, activations, gradients; ``opt share = train peak - sgd peak`` is what
  the optimizer adds to the training step's peak (its state, its constants, and whatever of the update's working
  memory rises above the backward pass's peak);
* ``ms``: median wall time of one update over ``--steps`` (rounds interleaved between optimizers), ``cpu ms`` the
  process CPU time (steadier on a loaded machine), ``x f32``: the CPU-time ratio to ``mlx_optim.AdamW`` with
  float32 state in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's mlx_optim, not an installed one

import mlx_optim  # noqa: E402
from mlx_optim import tasks  # noqa: E402

MB = 1 << 20


def state_bytes(opt) -> int:
    """Per-parameter state: every array of at least one dimension (the step, hyperparameters and keys are 0-d or
    named ``*rounding_key``)."""
    return sum(
        v.nbytes
        for k, v in tree_flatten(opt.state)
        if isinstance(v, mx.array) and v.ndim > 0 and not k.endswith("rounding_key") and not k.endswith("key")
    )


def optimizers() -> dict:
    return {
        "mlx AdamW": lambda: optim.AdamW(learning_rate=1e-3, bias_correction=True),
        "AdamW float32": lambda: mlx_optim.AdamW(learning_rate=1e-3),
        "AdamW bfloat16": lambda: mlx_optim.AdamW(learning_rate=1e-3, state_dtype=mx.bfloat16),
        "AdamW int8": lambda: mlx_optim.AdamW(learning_rate=1e-3, state_dtype="int8"),
        "AdamW int4": lambda: mlx_optim.AdamW(learning_rate=1e-3, state_dtype="int4"),
        "AdamW int8 chunk 4096": lambda: mlx_optim.AdamW(
            learning_rate=1e-3, state_dtype=mlx_optim.quantized.QuantizedState(8, chunk_size=4096)
        ),
        "Adafactor": lambda: mlx_optim.AdaFactor(learning_rate=1e-3),
        "CAME": lambda: mlx_optim.CAME(learning_rate=1e-3),
        "AdamMini": lambda: mlx_optim.AdamMini(learning_rate=1e-3, num_embeds=64, num_heads=4),
    }


def random_tree(kind: str, seed: int) -> dict:
    mx.random.seed(seed)
    if kind == "large":
        return {f"w{i}": mx.random.normal((2048, 2048)) * 0.02 for i in range(6)}
    return {
        f"layer{i}": {"lora_a": mx.random.normal((8, 2048)) * 0.02, "lora_b": mx.random.normal((2048, 8)) * 0.02}
        for i in range(112)
    }


def settle() -> None:
    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()


class Case:
    """One optimizer on one tree: its own parameters, the tree's gradients, a warmed-up update."""

    def __init__(self, name: str, make, kind: str, params: dict, grads: dict, setup=None):
        self.name, self.kind, self.grads, self.setup = name, kind, grads, setup
        self.opt = make()
        self.holder = {"params": tree_map(lambda x: x, params)}
        self.opt.init(self.holder["params"])
        mx.eval(self.holder, self.opt.state)
        self.n_params = sum(v.size for _, v in tree_flatten(params))
        self.update()  # warm-up: tracing, the g++ JIT, the state's first write

    def update(self) -> None:
        self.holder["params"] = self.opt.apply_gradients(self.grads, self.holder["params"])
        mx.eval(self.holder, self.opt.state)

    def memory(self, repeats: int = 3) -> dict:
        runs = []
        for _ in range(repeats):
            settle()
            before = mx.get_active_memory()
            self.update()
            runs.append((mx.get_peak_memory() - before, before))
        transient, before = sorted(runs)[len(runs) // 2]
        peak = before + transient
        new = sum(v.nbytes for _, v in tree_flatten(self.holder["params"])) + state_bytes(self.opt)
        return {
            "state_b_per_param": state_bytes(self.opt) / self.n_params,
            "state_mb": state_bytes(self.opt) / MB,
            "before_mb": before / MB,
            "peak_mb": peak / MB,
            "transient_mb": (peak - before) / MB,
            "new_p_s_mb": new / MB,
            "extra_mb": (peak - before - new) / MB,
            "opt_mb": (state_bytes(self.opt) + peak - before) / MB,
        }

    def time_one(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        self.update()
        return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def training_step_peak(make) -> float:
    """Peak (MB) of one compiled tiny-lm training step (batch 16, context 32): loss, gradients, update."""
    setup = tasks.get_task("tiny-lm").build(0)
    model, batches = setup.model, setup.batches
    lg = nn.value_and_grad(model, setup.loss_fn)
    opt = make()
    opt.init(model.trainable_parameters())
    state = [model.state, opt.state]

    def step(x, y):
        loss, grads = lg(model, x, y)
        opt.update(model, grads)
        return loss

    step = mx.compile(step, inputs=state, outputs=state)
    for _ in range(2):  # warm-up: tracing, the g++ JIT
        mx.eval(step(*next(batches)), state)
    settle()
    mx.eval(step(*next(batches)), state)
    return mx.get_peak_memory() / MB


def tiny_lm_tree() -> tuple[dict, dict]:
    setup = tasks.get_task("tiny-lm").build(0)
    model = setup.model
    x, y = next(setup.batches)
    _, grads = nn.value_and_grad(model, setup.loss_fn)(model, x, y)
    params = model.trainable_parameters()
    mx.eval(params, grads)
    return params, grads


def bench(kind: str, steps: int, only: list[str] | None = None) -> list[dict]:
    if kind == "tiny-lm":
        params, grads = tiny_lm_tree()
    else:
        params, grads = random_tree(kind, 0), random_tree(kind, 1)
        mx.eval(params, grads)
    makes = {k: v for k, v in optimizers().items() if not only or k in only or k == "AdamW float32"}
    baseline = training_step_peak(lambda: optim.SGD(learning_rate=1e-3)) if kind == "tiny-lm" else 0.0
    rows = []
    for name, make in makes.items():
        case = Case(name, make, kind, params, grads)
        row = {"tree": kind, "optimizer": name, "params": case.n_params, **case.memory()}
        if kind == "tiny-lm":
            row["train_peak_mb"] = training_step_peak(make)
            row["sgd_peak_mb"] = baseline
            row["opt_share_mb"] = row["train_peak_mb"] - baseline
        rows.append(row)
        del case
        settle()
    # step time: all optimizers alive, rounds interleaved
    cases = {name: Case(name, make, kind, params, grads) for name, make in makes.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    order = list(cases.items())
    for i in range(steps):
        for name, case in order[i % len(order) :] + order[: i % len(order)]:
            times[name].append(case.time_one())
    ref = statistics.median(c for _, c in times["AdamW float32"])
    mlx_opt = next((r["opt_mb"] for r in rows if r["optimizer"] == "mlx AdamW"), None)
    for row in rows:
        t = times[row["optimizer"]]
        row["ms"] = statistics.median(w for w, _ in t)
        row["cpu_ms"] = statistics.median(c for _, c in t)
        row["x_f32"] = row["cpu_ms"] / ref
        if mlx_opt:
            row["x_mlx"] = row["opt_mb"] / mlx_opt
    return rows


COLUMNS = [
    ("optimizer", "optimizer", "{}"),
    ("state_b_per_param", "state B/p", "{:.3f}"),
    ("before_mb", "before", "{:.2f}"),
    ("peak_mb", "peak", "{:.2f}"),
    ("transient_mb", "transient", "{:.2f}"),
    ("new_p_s_mb", "new p+s", "{:.2f}"),
    ("extra_mb", "extra", "{:.2f}"),
    ("opt_mb", "opt mem", "{:.2f}"),
    ("x_mlx", "x mlx", "{:.2f}"),
    ("train_peak_mb", "train peak", "{:.2f}"),
    ("sgd_peak_mb", "sgd peak", "{:.2f}"),
    ("opt_share_mb", "opt share", "{:.2f}"),
    ("ms", "ms", "{:.1f}"),
    ("cpu_ms", "cpu ms", "{:.1f}"),
    ("x_f32", "x f32", "{:.2f}"),
]


def markdown(rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = ["| " + " | ".join(t for _, t, _ in cols) + " |", "|---" * len(cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(f.format(r[k]) if k in r else "" for k, _, f in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", default="tiny-lm,lora,large")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--optimizers", default="", help="comma-separated names of the table (default: all)")
    args = parser.parse_args()
    all_rows = []
    for kind in args.trees.split(","):
        rows = bench(kind, args.steps, [n for n in args.optimizers.split(",") if n])
        all_rows += rows
        print(f"\n{kind}: {rows[0]['params']} parameters\n")
        print(markdown(rows), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_rows, f, indent=1)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
