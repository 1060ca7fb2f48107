"""DistributedMuon: Muon with the Newton–Schulz work spread over ranks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim.base import Tunable
from mlx_optim.docargs import args_from
from mlx_optim.functional.matrix import NSDtype, Weights
from mlx_optim.optimizers.muon import Muon
from mlx_optim.registry import register


@register
@args_from(Muon)
class DistributedMuon(Muon):
    r"""DistributedMuon: :class:`Muon` with the orthogonalization of each matrix done by one rank and all-gathered.

    The update is :class:`Muon`'s. The parameters selected by ``muon_filter`` are numbered in update order
    (the tree's leaf order); the ``i``-th one belongs to rank ``i % world_size`` (the reference's round-robin
    ``params[rank::world_size]``). Each rank keeps the momentum buffer of, and computes the orthogonalized
    update for, its own matrices only; the updated matrices are then exchanged with
    ``mx.distributed.all_gather`` (one padded buffer per dtype, values copied exactly), so every rank ends the
    step with the same parameters as :class:`Muon` would compute. The AdamW fallback parameters are updated
    on every rank, with replicated state, as in the reference.

    As in the reference (which relies on DDP), the gradients must already be averaged over the
    ranks: use ``mlx_optim.distributed.DataParallel(DistributedMuon(...))`` or average them
    yourself (``mlx.nn.average_gradients``). The rank assignment is fixed when the state is created;
    checkpoints of the sharded momentum go through :func:`mlx_optim.distributed.save_sharded` /
    ``load_sharded`` (re-sharded for a different world size).

    Paper (Muon): "Muon: An optimizer for hidden layers in neural networks" (Jordan et al., 2024). Reference:
    ``pytorch_optimizer.DistributedMuon``, same keywords and defaults as :class:`Muon`; ``ns_method``,
    ``ns_reset_steps`` and ``cautious`` reach the reference through its ``**kwargs``; ``group`` replaces its
    implicit ``torch.distributed`` group; its ``use_muon`` parameter groups are replaced by ``muon_filter``.

    Args:
        group: The ``mx.distributed`` group. Default ``None``: ``mx.distributed.init()`` (a one-process group
            when not launched, where each step is exactly :class:`Muon`'s).
    """

    name = "distributedmuon"
    reference = "pytorch_optimizer.DistributedMuon"

    def __init__(
        self,
        learning_rate: Tunable = 2e-2,
        momentum: Tunable = 0.95,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_coeffs: Weights = "original",
        use_adjusted_lr: bool = False,
        adamw_lr: Tunable = 3e-4,
        adamw_betas: Sequence[float] = (0.9, 0.95),
        adamw_wd: Tunable = 0.0,
        adamw_eps: Tunable = 1e-10,
        maximize: bool = False,
        *,
        ns_method: str = "newton_schulz",
        ns_reset_steps: Sequence[int] = (2,),
        cautious: bool = False,
        muon_filter: Callable[[str, mx.array], bool] | None = None,
        group: mx.distributed.Group | None = None,
        ns_dtype: NSDtype = None,
        state_dtype: mx.Dtype | None = None,
    ):
        self._setup(locals())
        if group is not None and not isinstance(group, mx.distributed.Group):
            raise ValueError(f"DistributedMuon: group={group!r} must be an mx.distributed.Group or None")
        self.group = group if group is not None else mx.distributed.init()
        self.muon_owner: dict[str, int] = {}  # path of each orthogonalized leaf -> the rank that updates it

    def init(self, parameters: dict) -> None:
        from mlx_optim.base import leaves

        order = []
        for path, _, p, _ in leaves(parameters, parameters, parameters):
            self._leaf_path = path
            if self.uses_muon(p):
                order.append(path)
        world = self.group.size()
        self.muon_owner = {path: i % world for i, path in enumerate(order)}
        super().init(parameters)

    def owns(self) -> bool:
        """Whether this rank updates the current leaf (always for AdamW leaves and on one rank)."""
        return self.muon_owner.get(self._leaf_path, self.group.rank()) == self.group.rank()

    def init_muon(self, parameter: mx.array, state: dict) -> None:
        if self.owns():
            super().init_muon(parameter, state)

    def muon_update(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        if not self.owns():
            return p  # updated by its owner and all-gathered in apply_gradients
        return super().muon_update(g, p, state)

    def apply_gradients(self, gradients: dict, parameters: dict, loss: mx.array | None = None) -> dict:
        new = super().apply_gradients(gradients, parameters, loss=loss)
        if self.group.size() == 1:
            return new
        from mlx.utils import tree_flatten, tree_map_with_path

        from mlx_optim.distributed.core import all_gather_owned

        flat = dict(tree_flatten(new))
        owners = {path: r for path, r in self.muon_owner.items() if path in flat}
        rank = self.group.rank()
        # the gather waits for all gradients (so for the collectives that averaged them: same order on every rank)
        after = [g for _, g in tree_flatten(gradients)]
        full = all_gather_owned({p: flat[p] for p, r in owners.items() if r == rank}, owners, flat, self.group, after)
        return tree_map_with_path(lambda path, x: full.get(path, x), new)
