"""ms/step of mlx_optim.AdamW against mlx.optimizers.AdamW(bias_correction=True), measured in one run.

    python benchmarks/step_time.py [--rounds 7] [--steps 3] [--floor] [--json out.json]

Trees: (a) "large": six 2048x2048 matrices (~25.2M parameters); (b) "lora": 224
leaves alternating 8x2048 and 2048x8 (~3.7M parameters). Modes: eager
(``apply_gradients`` + ``mx.eval``) and compiled (``mx.compile`` with the state
captured). The optimizers take turns round by round (interleaved), and the
ratio of their medians is printed: < 1 means mlx_optim is faster. ``ratio`` is
mlx_optim with its default update streams (mlx_optim.streams: one per core on
the CPU), ``ratio_1`` the same optimizer on one stream, like mlx's.

``--floor`` estimates the best LoRA ratio this machine allows for a per-leaf update: the fixed cost of a step
measured on the LoRA tree's 224 leaves shrunk to 16 elements each (graph building and one dispatch per leaf,
no data), plus the LoRA tree's bytes (28 per parameter: read p, g, m, v, write p, m, v) at the rate mlx_optim
reached on the large tree in the same run. ``floor ratio`` = that estimate / mlx's measured LoRA time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

import mlx_optim

WIDTHS = (6, 9, 10, 13, 12, 9, 6, 8)


def make_tree(kind: str) -> dict:
    mx.random.seed(0)
    if kind == "large":
        return {f"w{i}": mx.random.normal((2048, 2048)) * 0.02 for i in range(6)}
    n = 2 if kind == "overhead" else 2048  # "overhead": the LoRA tree's 224 leaves with 16 elements each
    return {
        f"layer{i}": {"lora_a": mx.random.normal((8, n)) * 0.02, "lora_b": mx.random.normal((n, 8)) * 0.02}
        for i in range(112)
    }


class Runner:
    """One optimizer on its own copy of the tree, eager or compiled."""

    def __init__(self, opt, tree: dict, grads: dict, compiled: bool):
        self.opt, self.grads = opt, grads
        self.holder = {"params": tree_map(lambda x: x, tree)}  # own containers: compile writes into them
        opt.init(self.holder["params"])

        def step(g):
            self.holder["params"] = opt.apply_gradients(g, self.holder["params"])

        if compiled:
            state = [self.holder, opt.state]
            step = mx.compile(step, inputs=state, outputs=state)
        self._step = step
        mx.eval(self.holder, opt.state)

    def run(self, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            self._step(self.grads)
            mx.eval(self.holder, self.opt.state)
        return (time.perf_counter() - start) / n * 1000


def bench(kind: str, compiled: bool, rounds: int, steps: int) -> dict:
    tree = make_tree(kind)
    grads = make_tree(kind)
    mx.eval(tree, grads)
    one_stream = mlx_optim.AdamW(learning_rate=1e-3)
    one_stream.update_streams = 1
    runners = {
        "mlx_optim": Runner(mlx_optim.AdamW(learning_rate=1e-3), tree, grads, compiled),
        "mlx_optim_1": Runner(one_stream, tree, grads, compiled),
        "mlx": Runner(optim.AdamW(learning_rate=1e-3, bias_correction=True), tree, grads, compiled),
    }
    for r in runners.values():
        r.run(2)  # warm-up: tracing, g++ JIT, allocator
    times = {k: [] for k in runners}
    order = list(runners.items())
    for i in range(rounds):
        for key, runner in order[i % len(order) :] + order[: i % len(order)]:  # rotate who goes first
            times[key].append(runner.run(steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    n_params = sum(v.size for _, v in tree_flatten(tree))
    return {
        "tree": kind,
        "mode": "compiled" if compiled else "eager",
        "params": n_params,
        "streams": mlx_optim.streams.default_update_streams(),
        "ms_mlx_optim": med["mlx_optim"],
        "ms_mlx_optim_1_stream": med["mlx_optim_1"],
        "ms_mlx": med["mlx"],
        "ratio": med["mlx_optim"] / med["mlx"],
        "ratio_1_stream": med["mlx_optim_1"] / med["mlx"],
    }


def floor(results: list[dict], rounds: int, steps: int) -> list[dict]:
    by = {(r["tree"], r["mode"]): r for r in results}
    out = []
    print("floor: fixed cost (224 leaves of 16 elements) + LoRA bytes at mlx_optim's large-tree rate")
    print("mode       fixed ms  mlx fixed ms  large GB/s  floor ms  floor ratio  measured ratio")
    for compiled in (False, True):
        mode = "compiled" if compiled else "eager"
        large, lora = by[("large", mode)], by[("lora", mode)]
        fixed = bench("overhead", compiled, rounds, steps)
        gbps = 28 * large["params"] / large["ms_mlx_optim"] / 1e6
        floor_ms = fixed["ms_mlx_optim"] + 28 * lora["params"] / gbps / 1e6
        rec = {
            "tree": "lora-floor",
            "mode": mode,
            "ms_fixed": fixed["ms_mlx_optim"],
            "ms_fixed_mlx": fixed["ms_mlx"],
            "large_gbps": gbps,
            "ms_floor": floor_ms,
            "floor_ratio": floor_ms / lora["ms_mlx"],
            "measured_ratio": lora["ratio"],
        }
        out.append(rec)
        print(
            f"{mode:<9} {rec['ms_fixed']:>9.2f} {rec['ms_fixed_mlx']:>13.2f} {gbps:>11.1f} {floor_ms:>9.2f}"
            f" {rec['floor_ratio']:>12.2f} {rec['measured_ratio']:>15.2f}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--trees", default="large,lora")
    parser.add_argument("--floor", action="store_true", help="estimate the best LoRA ratio (needs large and lora)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = []
    n = mlx_optim.streams.default_update_streams()
    print(f"mlx_optim update streams: {n} (ratio); ratio_1: the same optimizer with update_streams = 1")
    head = ("tree", "mode", "params", "mlx_optim ms", "1 stream ms", "mlx ms", "ratio", "ratio_1")
    print(" ".join(f"{h:<{w}}" if i < 2 else f"{h:>{w}}" for i, (h, w) in enumerate(zip(head, WIDTHS))))
    for kind in args.trees.split(","):
        for compiled in (False, True):
            r = bench(kind, compiled, args.rounds, args.steps)
            results.append(r)
            ms = (r["ms_mlx_optim"], r["ms_mlx_optim_1_stream"], r["ms_mlx"], r["ratio"], r["ratio_1_stream"])
            cells = [f"{r['tree']:<6}", f"{r['mode']:<9}", f"{r['params']:>10,}"]
            print(" ".join(cells + [f"{v:>{w}.2f}" for v, w in zip(ms, WIDTHS[3:])]))
    if args.floor:
        results += floor(results, args.rounds, args.steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
