"""Print the optimizer-state memory table (bytes of state per parameter) as markdown.

python scripts/memory_table.py

Every registered optimizer, with the keywords of its first parity row, takes one step on the
transformer-like parameter tree of tests/test_memory.py (embedding 1000x64, two blocks of
attention 64x64 projections, a 64-256-64 MLP with biases and layer norms).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlx.utils import tree_flatten  # noqa: E402

from tests.test_memory import markdown, memory_table, transformer_tree  # noqa: E402


def main() -> None:
    n = sum(a.size for _, a in tree_flatten(transformer_tree()))
    print(f"Optimizer state in bytes per parameter entry ({n} float32 parameters; global scalars not counted)\n")
    print(markdown(memory_table()))


if __name__ == "__main__":
    main()
