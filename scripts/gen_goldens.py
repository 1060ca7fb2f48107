#!/usr/bin/env python
"""Regenerate ``mlx_optim/data/goldens.npz``: every parity row's reference trajectory, from the pinned PyTorch /
pytorch_optimizer, with the row's keywords, gradient program and tolerance (see ``mlx_optim.check.goldens``).

    python scripts/gen_goldens.py [--out PATH]

Rows that cannot be replayed without the tests (keywords without a JSON form, a runner with no package program)
are listed in the file's ``not_portable`` with the reason. ``tests/parity/test_parity.py`` fails when a
reference no longer matches the file (run this script, then review the diff of the table it prints).
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlx_optim.base import Optimizer  # noqa: E402
from mlx_optim.check import goldens, problems  # noqa: E402
from tests.parity.harness import all_rows, golden_entry, stored_form  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(goldens.default_path()))
    args = parser.parse_args()
    Optimizer.fuse_updates = False  # the MLX runs some references replay (random draws) as the parity tests do
    t0 = time.time()
    rows, not_portable = [], []
    for row in all_rows():
        try:
            entry = golden_entry(row)
        except (TypeError, ValueError) as e:
            not_portable.append({"label": row.label, "name": row.name, "reason": str(e)})
            continue
        rec = stored_form(row)
        rows.append(
            {"entry": entry, "trajectory": rec.trajectory, "extras": rec.extras, "trajectory64": rec.trajectory64}
        )
    meta = {
        "references": {"torch": version("torch"), "pytorch_optimizer": version("pytorch-optimizer")},
        "problem_digest": problems.digest(),
    }
    for row in rows:  # name the row whose steps record different names (the writer needs one set per row)
        for traj in (row["trajectory"], row["trajectory64"] or row["trajectory"]):
            if any(list(step) != list(traj[0]) for step in traj):
                raise SystemExit(f"{row['entry']['label']}: its steps record different names")
    goldens.write(args.out, rows, not_portable, meta)
    size = Path(args.out).stat().st_size
    print(f"{args.out}: {len(rows)} portable rows, {len(not_portable)} not portable, {size / 2**20:.2f} MiB")
    for e in not_portable:
        print(f"  not portable: {e['label']}: {e['reason']}")
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
