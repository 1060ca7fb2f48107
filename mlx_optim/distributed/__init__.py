"""Training on several processes / machines with ``mx.distributed`` (launched by ``mlx.launch``).

Everything communicates through MLX's own collectives (``mx.distributed.all_sum`` /
``all_gather`` and ``mlx.nn.average_gradients``), so it runs on the backend the launch chose:
``ring`` (TCP / Thunderbolt between Macs), ``mpi``, ``nccl`` (CUDA) or ``jaccl``.

* :class:`DataParallel` — any optimizer: gradients (and loss) averaged over the ranks, replicated
  state, identical parameters on every rank after each step.
* :class:`ZeroRedundancyOptimizer` — ZeRO stage 1: each rank keeps and updates the state of its
  share of the leaves (whole leaves, balanced by size), then the parameters are all-gathered.
* ``mlx_optim.DistributedMuon`` — Muon with the Newton–Schulz work spread round-robin over the
  ranks (wrap it in :class:`DataParallel`).
* :func:`save_sharded` / :func:`load_sharded` — one safetensors file per rank; resume with the
  same world size, or re-shard into another one.
* :func:`broadcast_parameters` — rank 0's parameters to every rank.
"""

from mlx_optim.distributed.checkpoint import load_sharded, save_sharded, shard_filename
from mlx_optim.distributed.core import (
    all_gather_owned,
    all_reduce,
    average_gradients,
    average_loss,
    balanced_assignment,
    barrier,
    broadcast_parameters,
    get_group,
    reduce_gradients,
)
from mlx_optim.distributed.data_parallel import DataParallel
from mlx_optim.distributed.zero import ZeroRedundancyOptimizer, zero_unsupported_reason

__all__ = [
    "DataParallel",
    "ZeroRedundancyOptimizer",
    "all_gather_owned",
    "all_reduce",
    "average_gradients",
    "average_loss",
    "balanced_assignment",
    "barrier",
    "broadcast_parameters",
    "get_group",
    "load_sharded",
    "reduce_gradients",
    "save_sharded",
    "shard_filename",
    "zero_unsupported_reason",
]
