"""Page faults per optimizer step with and without mlx_optim's CPU buffer-cache reservation.

    python benchmarks/buffer_cache.py [--steps 20] [--quick]

Each setting runs in its own process (the allocator's history is per process): first 224 LoRA-sized leaves,
then six 4M-element leaves, each with mlx_optim.AdamW (2 streams and 1 stream) and mlx's AdamW, compiled,
like ``benchmarks/step_time.py``. It prints ms per step and minor page faults per step of the large-leaf runs,
with ``MLX_OPTIM_BUFFER_CACHE=0`` (MLX's default CPU cache limit, 32 MB) and with the default reservation
(``mlx_optim.streams.reserve_buffer_cache``). Linux only (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def child(steps: int, quick: bool) -> list[dict]:
    import resource
    import time

    import mlx.core as mx
    import mlx.optimizers as optim

    import mlx_optim

    def tree(n: int, size: int) -> dict:
        mx.random.seed(0)
        return {f"l{i}": mx.random.normal((size,)) * 0.02 for i in range(n)}

    out = []
    shapes = ((224, 2048), (6, 1 << 18)) if quick else ((224, 16384), (6, 1 << 22))
    for n, size in shapes:
        for name in ("mlx_optim", "mlx_optim_1", "mlx"):
            if name == "mlx":
                opt = optim.AdamW(learning_rate=1e-3, bias_correction=True)
            else:
                opt = mlx_optim.AdamW(learning_rate=1e-3)
                opt.update_streams = 2 if name == "mlx_optim" else 1
            holder, grads = {"p": tree(n, size)}, tree(n, size)
            mx.eval(holder, grads)
            opt.init(holder["p"])

            def step(g, holder=holder, opt=opt):
                holder["p"] = opt.apply_gradients(g, holder["p"])

            state = [holder, opt.state]
            step = mx.compile(step, inputs=state, outputs=state)
            for _ in range(3):
                step(grads)
                mx.eval(holder, opt.state)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            for _ in range(steps):
                step(grads)
                mx.eval(holder, opt.state)
            ms = (time.perf_counter() - start) / steps * 1000
            faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
            out.append({"leaves": n, "size": size, "optimizer": name, "ms": ms, "faults_per_step": faults})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small trees (CI smoke test)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps, args.quick)))
        return 0
    results = {}
    for label, env in (("32 MB (MLX default)", "0"), ("reserved (mlx_optim)", "1")):
        cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps)] + (["--quick"] if args.quick else [])
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MLX_OPTIM_BUFFER_CACHE": env})
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        results[label] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'cache':<22} {'optimizer':<12} {'ms/step':>8} {'faults/step':>12} {'MB faulted':>11}")
    for label, rows in results.items():
        for r in rows[3:]:  # the large-leaf runs
            mb = r["faults_per_step"] * 4096 / 1e6
            print(f"{label:<22} {r['optimizer']:<12} {r['ms']:>8.2f} {r['faults_per_step']:>12.0f} {mb:>11.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
