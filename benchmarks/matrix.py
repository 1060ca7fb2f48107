"""Eager step time of the matrix optimizers against their pytorch_optimizer references.

For each optimizer and leaf size ``N``: one ``N x N`` parameter, the same gradient on both sides, ``--steps`` timed
steps after one warm-up step (which initializes the state), the two libraries interleaved step by step in this
process; the table shows the median milliseconds per step and the ratio mlx_optim / reference. PyTorch runs with
``--torch-threads`` threads (default 2). Default keywords on both sides, except that GaLore gets the projection
group keys the reference needs (rank 128, gap 50).

A reference step that fails (for example ``pytorch_optimizer.Kron`` at ``N >= 1024`` when ``opt_einsum`` is not
installed: torch then contracts its three-operand einsum left to right, through an ``N^4`` outer product) is
reported as failed and the row goes on with our steps alone.

MLX's CPU backend uses OpenBLAS when ``mlx_optim`` can load it (``--blas auto``, the default here);
``--blas off`` keeps the reference BLAS bundled with ``mlx[cpu]``. The BLAS in use is printed first.

    python benchmarks/matrix.py                      # 1024 and 2048, all optimizers
    python benchmarks/matrix.py --sizes 512 --only muon,soap --steps 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's mlx_optim

# name shown, our registry name, our extra keywords, reference keywords (beyond the parameters)
SPECS: list[tuple[str, str, dict, dict]] = [
    ("muon", "muon", {}, {}),
    ("muon[ns bf16]", "muon", {"ns_dtype": "bfloat16"}, {}),
    ("adamuon", "adamuon", {}, {}),
    ("normuon", "normuon", {}, {}),
    ("scion", "scion", {}, {}),
    ("soap", "soap", {}, {}),
    ("shampoo", "shampoo", {}, {}),
    ("scalableshampoo", "scalableshampoo", {}, {}),
    ("kron", "kron", {}, {}),
    ("splus", "splus", {}, {}),
    ("dash", "dash", {}, {}),
    ("galore", "galore", {}, {"rank": 128, "update_proj_gap": 50, "scale": 1.0, "projection_type": "std"}),
]
MUON_GROUPS = {"muon", "adamuon", "normuon"}  # the reference flags orthogonalized groups with use_muon


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,2048", help="comma-separated leaf sizes N (N x N)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per optimizer and size (median reported)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(s[0] for s in SPECS))
    ap.add_argument("--blas", default="auto", help="MLX_OPTIM_BLAS for this run: auto, off or a library path")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--json", default="", help="also write the rows to this file")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    if "mlx_optim" not in sys.modules:  # the BLAS choice is made when mlx_optim is first imported
        os.environ["MLX_OPTIM_BLAS"] = args.blas
    import numpy as np
    import pytorch_optimizer
    import torch  # before mlx_optim, so that torch keeps its own BLAS

    # isort: split
    import mlx_optim  # before mlx.core: it may load OpenBLAS for MLX's CPU backend

    # isort: split
    import mlx.core as mx

    from mlx_optim import blas

    torch.set_num_threads(args.torch_threads)
    info = blas.summary()
    print(f"MLX BLAS: {', '.join(info['blas'])} (fast: {info['fast']}); torch threads {args.torch_threads}")
    only = {s for s in args.only.split(",") if s}
    specs = [s for s in SPECS if not only or s[0] in only]
    unknown = only - {s[0] for s in SPECS}
    if unknown:
        raise SystemExit(f"unknown optimizer(s): {sorted(unknown)}")

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(0)
        w0 = rng.standard_normal((n, n)).astype(np.float32) * 0.02
        grads = [rng.standard_normal((n, n)).astype(np.float32) * 1e-3 for _ in range(args.steps + 1)]
        for label, name, ours_kw, ref_kw in specs:
            tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
            params = [{"params": [tp], "use_muon": True}] if name in MUON_GROUPS else [tp]
            ref = pytorch_optimizer.load_optimizer(name)(params, **ref_kw)
            opt = mlx_optim.load_optimizer(name)(**ours_kw)
            mp = {"w": mx.array(w0)}
            t_ref, t_mlx = [], []
            error = ""
            for i, g in enumerate(grads):
                tp.grad = torch.from_numpy(g)
                t0 = time.perf_counter()
                if not error:
                    try:
                        ref.step()
                    except (RuntimeError, MemoryError) as e:  # e.g. Kron's 3-operand einsum without opt_einsum
                        error = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                t1 = time.perf_counter()
                mg = {"w": mx.array(g)}
                mx.eval(mg)
                t2 = time.perf_counter()
                mp = opt.apply_gradients(mg, mp)
                mx.eval(mp, opt.state)
                t3 = time.perf_counter()
                if i:  # step 0 initializes the state
                    t_ref.append((t1 - t0) * 1e3)
                    t_mlx.append((t3 - t2) * 1e3)
            r = {
                "optimizer": label,
                "n": n,
                "ms_ref": None if error else statistics.median(t_ref),
                "ms_mlx_optim": statistics.median(t_mlx),
            }
            r["ratio"] = None if error else r["ms_mlx_optim"] / r["ms_ref"]
            if error:
                r["ref_error"] = error
            rows.append(r)
            ref_ms = f"{r['ms_ref']:9.1f} ms" if not error else "   failed"
            ratio = f"{r['ratio']:6.2f}x" if not error else f"-- ({error})"
            print(f"{label:>16} {n:>5}  ref {ref_ms}  mlx_optim {r['ms_mlx_optim']:9.1f} ms  ratio {ratio}", flush=True)
    print("\n| optimizer | N | pytorch_optimizer (ms) | mlx_optim (ms) | ratio |\n|---|---|---|---|---|")
    for r in rows:
        ref_ms = f"{r['ms_ref']:.1f}" if r["ms_ref"] is not None else "failed"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "--"
        print(f"| {r['optimizer']} | {r['n']} | {ref_ms} | {r['ms_mlx_optim']:.1f} | {ratio} |")
    if args.json:
        with open(args.json, "w") as f:
            meta = {"blas": info["blas"], "fast_blas": info["fast"], "torch_threads": args.torch_threads}
            json.dump({**meta, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
