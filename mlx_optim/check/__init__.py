"""``mlx-optim check``: the parity rows, the contract and the fused kernels, verified on this device without PyTorch."""
