"""The former main job, kept as an alias: ``python -m mlx_optim.demo [args]`` is ``mlx-optim compare [args]``.

The default task (``spirals``: an MLP on generated two-spirals data) and optimizer set are the ones this
script used to run; see :mod:`mlx_optim.cli` for the options (``--steps``, ``--optimizers``, ``--lr``,
``--out``, ``--task``).
"""

from __future__ import annotations

import sys

from mlx_optim.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
