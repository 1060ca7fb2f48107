"""Per-element cost of each element-wise optimizer's compiled update, relative to AdamW, measured in one run.

    python benchmarks/elementwise_cost.py [--size 4000000] [--rounds 5] [--only adam,lion] [--leaves 1] [--ops]
                                          [--json out.json]

One leaf of ``--size`` float32 elements, the update under ``mx.compile`` on one stream (``update_streams = 1``),
keywords from each optimizer's first parity row. Every optimizer is timed in each round, interleaved (the order
rotates round by round), so that the machine's drift hits all of them alike; the table is the median ns per
element and its ratio to ``mlx_optim.AdamW``'s median in the same run. This isolates the arithmetic per element
(what the compiled loop costs) from the tree shape and the number of cores (benchmarks/suite.py and
benchmarks/step_time.py measure those).

``--ops`` adds single operations to the same run (``f(x, y) = op(x) + y`` compiled, x in [0.01, 3]): what one
``sqrt``, ``exp`` or ``pow`` costs per element in MLX's compiled CPU loops, against the whole AdamW update.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import time
from pathlib import Path

import mlx.core as mx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.parity (the rows' keywords)

import mlx_optim  # noqa: E402
from mlx_optim.packed import ELEMENTWISE  # noqa: E402
from tests.parity.harness import all_rows  # noqa: E402


class Runner:
    def __init__(self, name: str, kwargs: dict, size: int, leaves: int = 1):
        opt = mlx_optim.load_optimizer(name)(**kwargs)
        opt.update_streams = 1
        self.opt, self.loss = opt, mx.array(1.0)
        mx.random.seed(0)
        self.holder = {"p": {f"w{i}": mx.random.normal((size // leaves,)) for i in range(leaves)}}
        self.grads = {f"w{i}": mx.random.normal((size // leaves,)) * 0.1 for i in range(leaves)}
        opt.init(self.holder["p"])

        def step(g):
            kw = {"loss": self.loss} if opt.needs_loss else {}
            self.holder["p"] = opt.apply_gradients(g, self.holder["p"], **kw)

        state = [self.holder, opt.state]
        self._step = mx.compile(step, inputs=state, outputs=state)
        mx.eval(self.holder, opt.state, self.grads)
        self.run(2)  # warm-up: tracing, g++, allocator

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self._step(self.grads)
            mx.eval(self.holder, self.opt.state)
        return (time.perf_counter() - start) / steps


class OpRunner:
    """One compiled single-operation loop ``op(x) + y`` over ``size`` elements (``--ops``)."""

    E = mx.array(2.718281828459045)
    OPS = {
        "op:x*y+1": lambda x, y: x * y + 1,
        "op:x/y": lambda x, y: x / y,
        "op:sqrt": lambda x, y: mx.sqrt(x) + y,
        "op:log": lambda x, y: mx.log(x) + y,
        "op:pow(x,0.3)": lambda x, y: mx.power(x, 0.3) + y,
        "op:exp": lambda x, y: mx.exp(-x) + y,
        "op:log1p": lambda x, y: mx.log1p(x) + y,
        "op:sigmoid": lambda x, y: mx.sigmoid(x) + y,
        "op:tanh": lambda x, y: mx.tanh(x) + y,
    }

    def __init__(self, name: str, size: int):
        mx.random.seed(0)
        self.x, self.y = mx.random.uniform(0.01, 3.0, (size,)), mx.random.uniform(0.01, 3.0, (size,))
        self.fn = mx.compile(self.OPS[name])
        mx.eval(self.x, self.y)
        self.run(2)

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            mx.eval(self.fn(self.x, self.y))
        return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", default="*")
    parser.add_argument("--leaves", type=int, default=1, help="split the elements over this many leaves")
    parser.add_argument("--ops", action="store_true", help="also time single operations (sqrt, exp, pow, ...)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    first_row = {}
    for row in all_rows():
        first_row.setdefault(row.name, dict(row.kwargs))
    patterns = args.only.split(",")
    names = ["adamw"] + sorted(n for n in ELEMENTWISE if n != "adamw" and any(fnmatch.fnmatch(n, p) for p in patterns))
    runners = {n: Runner(n, first_row[n], args.size, args.leaves) for n in names}
    if args.ops:
        runners.update({n: OpRunner(n, args.size) for n in OpRunner.OPS})
        names = [*names, *OpRunner.OPS]
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            times[n].append(runners[n].run(args.steps))
    ns = {n: statistics.median(v) / args.size * 1e9 for n, v in times.items()}
    rows = [{"optimizer": n, "ns_per_element": ns[n], "x_adamw": ns[n] / ns["adamw"]} for n in names]
    print(f"{'optimizer':<20} {'ns/elem':>8} {'x adamw':>8}")
    for r in sorted(rows, key=lambda r: r["x_adamw"]):
        print(f"{r['optimizer']:<20} {r['ns_per_element']:>8.2f} {r['x_adamw']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
