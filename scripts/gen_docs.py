"""Regenerate the optimizer table in README.md from the registry and the parity table.

python scripts/gen_docs.py          # rewrite README.md between the markers
python scripts/gen_docs.py --check  # exit 1 if README.md is out of date (run by the tests)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx_optim  # noqa: E402
from tests.parity.harness import DEFAULT_ATOL, DEFAULT_RTOL, all_rows  # noqa: E402

BEGIN, END = "<!-- optimizer-table:begin -->", "<!-- optimizer-table:end -->"


def table() -> str:
    rows = all_rows()
    lines = [
        "| name | class | family | reference | parity rows (eager + compiled) | tolerance |",
        "|---|---|---|---|---|---|",
    ]
    for name in mlx_optim.get_supported_optimizers():
        cls = mlx_optim.load_optimizer(name)
        mine = [r for r in rows if r.name == name]
        loose = [r for r in mine if r.atol > DEFAULT_ATOL or r.rtol > DEFAULT_RTOL or r.compare]
        if not mine:
            tol = "no parity rows"
        elif not loose:
            tol = "default"
        else:
            tol = "; ".join(
                f"`{r.id or 'defaults'}`: {'statistics' if r.compare else f'atol {r.atol:g} rtol {r.rtol:g}'}"
                for r in loose
            )
        lines.append(f"| `{name}` | `{cls.__name__}` | {cls.family} | `{cls.reference}` | {len(mine)} | {tol} |")
    n_tests = 2 * len(rows)
    lines.append("")
    lines.append(
        f"{len(mlx_optim.OPTIMIZERS)} optimizers, {len(rows)} parity rows ({n_tests} parity tests). "
        f"Default tolerance: atol {DEFAULT_ATOL:g}, rtol {DEFAULT_RTOL:g}, after every one of 20 steps."
    )
    return "\n".join(lines)


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md's optimizer table is out of date: run python scripts/gen_docs.py")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
