"""Step-time suite: every registered optimizer, eager and compiled, against mlx's built-ins and PyTorch.

    python benchmarks/suite.py                     # full run (all optimizers; tens of minutes on 2 CPU cores)
    python benchmarks/suite.py --quick             # small trees, one round: a smoke test (CI)
    python benchmarks/suite.py --only 'adam*,sgd' --json out.json
    python benchmarks/suite.py --skip 'kron,shampoo,scalableshampoo,soap,splus'   # without the slowest preconditioners

Trees: "large" (six 2048x2048 matrices, ~25.2M parameters; --quick: 256x256) and "lora" (224 leaves
alternating 8x2048 and 2048x8, ~3.7M parameters; --quick: 8x256). Every optimizer runs with the keywords of its
first parity row. For each tree and mode (eager: ``apply_gradients`` + ``mx.eval``; compiled: ``mx.compile`` with
the state captured) the suite times, interleaved round by round in one process (the alternation order flips every
round): mlx_optim's optimizer; mlx's built-in equivalent where one exists (ratio ``x mlx``); for element-wise
optimizers on the LoRA tree, the packed update (``mlx_optim.packed.pack``); and, eager only, the PyTorch reference
on the same CPU (``x torch``). Also printed: achieved GB/s (the minimal traffic: read p, g and the state, write p
and the state) against the machine's streaming bandwidth measured at start-up (a NumPy copy), state bytes per
parameter, and the ratio to mlx_optim.AdamW on the same tree and mode. Medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx_optim  # noqa: E402
from mlx_optim.packed import is_elementwise, pack  # noqa: E402
from mlx_optim.precision import state_bytes  # noqa: E402
from tests.parity.harness import all_rows, reference_class  # noqa: E402

# mlx.optimizers equivalents (same math, bias-corrected where ours is), built from our row's keywords.
BUILTIN = {
    "adam": lambda kw: optim.Adam(kw["learning_rate"], bias_correction=True),
    "adamw": lambda kw: optim.AdamW(
        kw["learning_rate"], weight_decay=kw.get("weight_decay", 1e-2), bias_correction=True
    ),
    "sgd": lambda kw: optim.SGD(kw["learning_rate"], momentum=kw.get("momentum", 0.0)),
    "rmsprop": lambda kw: optim.RMSprop(kw["learning_rate"]),
    "adagrad": lambda kw: optim.Adagrad(kw["learning_rate"]),
    "adadelta": lambda kw: optim.AdaDelta(kw["learning_rate"]),
    "adamax": lambda kw: optim.Adamax(kw["learning_rate"]),
    "lion": lambda kw: optim.Lion(kw["learning_rate"]),
    "adafactor": lambda kw: optim.Adafactor(kw.get("learning_rate")),
}


def make_tree(kind: str, quick: bool, seed: int) -> dict:
    mx.random.seed(seed)
    n = 256 if quick else 2048
    if kind == "large":
        return {f"w{i}": mx.random.normal((n, n)) * 0.02 for i in range(6)}
    return {
        f"layer{i}": {"lora_a": mx.random.normal((8, n)) * 0.02, "lora_b": mx.random.normal((n, 8)) * 0.02}
        for i in range(112)
    }


def stream_bandwidth(nbytes: int = 256 << 20) -> float:
    """GB/s of a NumPy copy (one read + one write per byte), best of 5."""
    a = np.ones(nbytes // 4, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best / 1e9


class MlxRunner:
    """One MLX optimizer on its own copy of the tree, eager or compiled."""

    def __init__(self, opt, tree: dict, grads: dict, compiled: bool):
        self.opt, self.grads = opt, grads
        self.holder = {"params": tree_map(lambda x: x, tree)}  # own containers: compile writes into them
        opt.init(self.holder["params"])
        loss = mx.array(1.0)
        takes_loss = isinstance(opt, mlx_optim.Optimizer)

        def step(g):
            kw = {"loss": loss} if takes_loss else {}
            self.holder["params"] = opt.apply_gradients(g, self.holder["params"], **kw)

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


class TorchRunner:
    """The PyTorch reference on the same CPU (eager; p.grad set once)."""

    def __init__(self, row, tree: dict, grads: dict):
        import torch  # noqa: PLC0415

        self.params = []
        for (_, p), (_, g) in zip(tree_flatten(tree), tree_flatten(grads)):
            t = torch.tensor(np.array(p), requires_grad=True)
            t.grad = torch.tensor(np.array(g))
            self.params.append(t)
        self.opt = reference_class(row)(self.params, **row.torch_kwargs())
        self.closure = (lambda: torch.tensor(1.0)) if "closure" in type(self.opt).step.__code__.co_varnames else None

    def run(self, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            self.opt.step(self.closure) if self.closure else self.opt.step()
        return (time.perf_counter() - start) / n * 1000


def first_rows() -> dict:
    rows = {}
    for row in all_rows():
        rows.setdefault(row.name, row)
    return rows


def bench_one(name, row, kind, compiled, trees, args, bandwidth) -> dict:
    tree, grads = trees
    cls = mlx_optim.load_optimizer(name)
    n_params = sum(v.size for _, v in tree_flatten(tree))
    rec = {"optimizer": name, "tree": kind, "mode": "compiled" if compiled else "eager", "params": n_params}
    runners = {}
    try:
        ours = MlxRunner(cls(**row.kwargs), tree, grads, compiled)
        t0 = time.perf_counter()
        ours.run(1)  # warm-up: tracing, g++ JIT, allocator
        first = time.perf_counter() - t0
        runners["mlx_optim"] = ours
    except Exception as e:  # noqa: BLE001 (reported in the table, e.g. optimizers that need step_with)
        rec["error"] = f"{type(e).__name__}: {str(e)[:100]}"
        return rec
    rec["state_bytes_per_param"] = state_bytes(ours.opt) / n_params
    if kind == "lora" and is_elementwise(cls(**row.kwargs)):
        runners["packed"] = MlxRunner(pack(cls(**row.kwargs)), tree, grads, compiled)
    if name in BUILTIN:
        runners["mlx"] = MlxRunner(BUILTIN[name](dict(row.kwargs)), tree, grads, compiled)
    if not compiled and not args.no_torch:
        try:
            runners["torch"] = TorchRunner(row, tree, grads)
        except Exception as e:  # noqa: BLE001
            rec["torch_error"] = f"{type(e).__name__}: {str(e)[:100]}"
    for key, r in list(runners.items()):
        if key != "mlx_optim" or first <= args.slow_seconds:
            try:
                r.run(1 if key == "mlx_optim" else 2)  # warm-up: allocator caches (the first optimizer's ran cold)
            except Exception as e:  # noqa: BLE001 (e.g. a reference that needs a real backward graph)
                rec[f"{key}_error"] = f"{type(e).__name__}: {str(e)[:100]}"
                del runners[key]
    slow = first > args.slow_seconds  # very slow steps (matrix preconditioners on 2048^2): one timed round
    rounds, steps = (1, 1) if slow else (args.rounds, args.steps)
    times = {k: [] for k in runners}
    order = list(runners.items())
    for i in range(rounds):
        for key, r in order if i % 2 == 0 else order[::-1]:
            times[key].append(r.run(steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    rec.update({f"ms_{k}": v for k, v in med.items()})
    ms = med["mlx_optim"]
    if "mlx" in med:
        rec["x_mlx"] = ms / med["mlx"]
    if "torch" in med:
        rec["x_torch"] = ms / med["torch"]
    if "packed" in med:
        rec["packed_x_mlx_optim"] = med["packed"] / ms
        if "mlx" in med:
            rec["packed_x_mlx"] = med["packed"] / med["mlx"]
    p_bytes = sum(v.nbytes for _, v in tree_flatten(tree))
    traffic = 3 * p_bytes + 2 * rec["state_bytes_per_param"] * n_params  # read p, g, state; write p, state
    best = min(ms, med.get("packed", ms))
    rec["gbps"] = traffic / (best / 1000) / 1e9
    rec["frac_bandwidth"] = rec["gbps"] / bandwidth
    return rec


def fmt(rec: dict) -> str:
    if "error" in rec:
        return f"{rec['optimizer']:<20} {rec['tree']:<6} {rec['mode']:<9} error: {rec['error']}"

    def f(key, spec=">7.2f"):
        return format(rec[key], spec) if key in rec else f"{'-':>{spec[1:].split('.')[0]}}"

    return (
        f"{rec['optimizer']:<20} {rec['tree']:<6} {rec['mode']:<9}"
        f" {f('ms_mlx_optim', '>9.2f')} {f('ms_packed', '>9.2f')}"
        f" {f('x_mlx')} {f('packed_x_mlx')} {f('x_torch')} {f('x_adamw')} {f('gbps', '>6.2f')}"
        f" {f('frac_bandwidth', '>5.2f')} {f('state_bytes_per_param', '>5.1f')}"
    )


HEADER = (
    f"{'optimizer':<20} {'tree':<6} {'mode':<9} {'ms':>9} {'packed ms':>9} {'x mlx':>7} {'pk x mlx':>7}"
    f" {'x torch':>7} {'x adamw':>7} {'GB/s':>6} {'of bw':>5} {'B/par':>5}"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small trees, one round of one step (smoke test)")
    parser.add_argument("--only", default="*", help="comma-separated glob patterns of registry names")
    parser.add_argument("--skip", default="", help="comma-separated glob patterns of registry names to leave out")
    parser.add_argument("--trees", default="large,lora")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; --quick 1)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 2; --quick 1)")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="a first step slower than this: 1 round")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.steps = args.steps or (1 if args.quick else 2)
    skip = set(mlx_optim.get_supported_optimizers(args.skip.split(","))) if args.skip else set()
    names = [n for n in mlx_optim.get_supported_optimizers(args.only.split(",")) if n not in skip]
    if "adamw" not in names:
        names = ["adamw", *names]  # the x adamw column
    rows = first_rows()
    bandwidth = stream_bandwidth(32 << 20 if args.quick else 256 << 20)
    print(f"streaming bandwidth (NumPy copy): {bandwidth:.1f} GB/s; mlx {mx.__version__}; {len(names)} optimizers")
    print(HEADER)
    results = []
    for kind in args.trees.split(","):
        trees = (make_tree(kind, args.quick, 0), make_tree(kind, args.quick, 1))
        mx.eval(trees)
        for mode in args.modes.split(","):
            adamw_ms = None
            for name in ["adamw", *[n for n in names if n != "adamw"]]:
                rec = bench_one(name, rows[name], kind, mode == "compiled", trees, args, bandwidth)
                if name == "adamw":
                    adamw_ms = rec.get("ms_mlx_optim")
                if adamw_ms and "ms_mlx_optim" in rec:
                    rec["x_adamw"] = rec["ms_mlx_optim"] / adamw_ms
                results.append(rec)
                print(fmt(rec), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"bandwidth_gbps": bandwidth, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
