"""``python -m mlx_optim``: the ``mlx-optim`` command line (see :mod:`mlx_optim.cli`)."""

from mlx_optim.cli import main

if __name__ == "__main__":  # not when a documentation tool imports every submodule
    raise SystemExit(main())
