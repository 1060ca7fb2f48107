"""``python -m mlx_optim``: the ``mlx-optim`` command line (see :mod:`mlx_optim.cli`)."""

from mlx_optim.cli import main

raise SystemExit(main())
