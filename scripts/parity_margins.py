"""Each parity row's margin: the largest ``|mine - ref| / (atol + rtol |ref|)`` over its steps and tensors (eager).

Run it under different CPU-kernel settings to find rows whose pass depends on the machine's BLAS/LAPACK:

    MLX_OPTIM_BLAS=auto python scripts/parity_margins.py --json default.json   # as the test suite runs
    MLX_OPTIM_BLAS=off python scripts/parity_margins.py --json bundled.json     # MLX's bundled reference BLAS
    MKL_ENABLE_INSTRUCTIONS=SSE4_2 MLX_OPTIM_BLAS=auto python scripts/parity_margins.py --json sse42.json
    python scripts/parity_margins.py --diff default.json sse42.json   # rows whose margin moved

A margin above 1 is a failing row. Rows that compare statistics (``compare``) are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402, F401  (first, as in tests/conftest.py: torch keeps its own BLAS if mlx_optim loads OpenBLAS)

import mlx_optim  # noqa: E402, F401  (before mlx.core: with MLX_OPTIM_BLAS=auto, MLX's BLAS calls go to OpenBLAS)


def margins(pattern: str | None) -> dict[str, float]:
    import fnmatch

    import numpy as np

    from tests.parity.harness import all_rows, reference_trajectory, run_mlx

    out = {}
    for row in all_rows():
        if row.compare is not None or (pattern and not fnmatch.fnmatch(row.label, pattern)):
            continue
        if row.runner is not None:
            mine, ref, *_ = row.runner(row, False)
        else:
            mine, ref = run_mlx(row, False), reference_trajectory(row)
        worst = 0.0
        for a, b in zip(mine, ref):
            for k in a:
                tol = row.atol + row.rtol * np.abs(b[k])
                worst = max(worst, float(np.max(np.abs(a[k] - b[k]) / tol)))
        out[row.label] = worst
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write {row: margin} here")
    parser.add_argument("--only", help="glob over row labels")
    parser.add_argument("--diff", nargs=2, metavar=("A", "B"), help="compare two --json files")
    parser.add_argument("--min-change", type=float, default=0.05, help="with --diff: report moves above this")
    args = parser.parse_args(argv)
    if args.diff:
        a, b = (json.loads(Path(p).read_text()) for p in args.diff)
        moved = sorted(
            ((k, a[k], b[k]) for k in a if k in b and abs(a[k] - b[k]) > args.min_change),
            key=lambda x: -max(x[1], x[2]),
        )
        for k, x, y in moved:
            print(f"{k:50s} {x:8.3f} -> {y:8.3f}")
        print(f"{len(moved)} of {len(a)} rows moved by more than {args.min_change}")
        return 0
    result = margins(args.only)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True))
    top = sorted(result.items(), key=lambda kv: -kv[1])[:15]
    for k, v in top:
        print(f"{k:50s} {v:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
