"""Integrations with other MLX libraries (each behind an extra): :mod:`mlx_optim.integrations.mlx_lm` (``lm``)."""
