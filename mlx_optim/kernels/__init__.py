"""Fused update kernels (Metal and CUDA through ``mx.fast``) with the pure-``mx`` math as fallback.

Nothing is shipped here yet: on the CPU backend the compiled pure-``mx`` path is the fast path, and the
performance issue adds the GPU kernels (checked against ``mlx_optim.functional`` and the optimizers' math).
"""
