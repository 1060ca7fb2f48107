"""DistributedMuon: Muon with the Newton–Schulz work spread over ranks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim.base import Tunable
from mlx_optim.functional.matrix import NSDtype, Weights
from mlx_optim.optimizers.muon import Muon
from mlx_optim.registry import register


@register
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
        learning_rate: Step size :math:`\eta` of the orthogonalized branch: a float or a schedule (a callable of the
            step). Default ``2e-2``.
        momentum: Momentum decay :math:`\mu` in [0, 1). Default ``0.95``.
        weight_decay: Weight decay coefficient (>= 0) of the orthogonalized parameters, applied at
            ``learning_rate``. Default ``0.0``.
        weight_decouple: Decoupled decay ``p <- p (1 - lr wd)`` (both branches) instead of an L2 penalty added to
            the gradient. Default ``True``.
        nesterov: Orthogonalize the Nesterov look-ahead :math:`(1-\mu) g_t + \mu b_t` instead of the momentum
            :math:`b_t`. Default ``True``.
        ns_steps (int): Number of Newton–Schulz iterations (> 0). Default ``5``.
        ns_coeffs: Newton–Schulz coefficients: a preset (``"original"``, ``"quintic"``, ``"polar_express"``,
            ``"polar_express_safer"``), one ``(a, b, c)`` tuple or a sequence of them, one per iteration (the
            last repeats). Default ``"original"``.
        use_adjusted_lr: Scale the orthogonalized step by Moonlight's :math:`0.2\sqrt{\max(\text{out}, \text{in})}`
            instead of :math:`\sqrt{\max(1, \text{out}/\text{in})}`. Default ``False``.
        adamw_lr: Learning rate (>= 0) of the AdamW branch. Default ``3e-4``.
        adamw_betas: :math:`(\beta_1, \beta_2)`, each in [0, 1), of the AdamW branch. Default ``(0.9, 0.95)``.
        adamw_wd: Weight decay (>= 0) of the AdamW branch, applied at ``adamw_lr``. Default ``0.0``.
        adamw_eps: :math:`\epsilon` (>= 0) of the AdamW branch. Default ``1e-10``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        ns_method: ``"newton_schulz"`` (in bfloat16, as the reference) or ``"gram_newton_schulz"`` (the restarted
            Gram iteration, in float16). Default ``"newton_schulz"``.
        ns_reset_steps: With ``"gram_newton_schulz"``, the iteration counts at which the Gram iteration
            restarts. Default ``(2,)``.
        cautious: Zero the orthogonalized update's entries whose sign disagrees with the gradient's (the rest
            rescaled to keep its size). Default ``False``.
        muon_filter: ``callable(path, parameter) -> bool`` choosing the parameters that take the orthogonalized
            update; the others get AdamW. Default ``None``: matrices (``ndim >= 2``) whose path does not contain
            ``"embed"``.
        group: The ``mx.distributed`` group. Default ``None``: ``mx.distributed.init()`` (a one-process group
            when not launched, where each step is exactly :class:`Muon`'s).
        ns_dtype: dtype of the Newton–Schulz iteration (keyword-only): ``mx.bfloat16``, ``mx.float16``,
            ``mx.float32`` or their names; ``None`` (default): the reference's (bfloat16, float16 for
            ``"gram_newton_schulz"``) on a GPU and float32 on the CPU backend, where MLX has no fast low-precision
            matmul (float32 is also the more accurate polar factor). Pass ``"bfloat16"`` to match the reference
            on the CPU.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
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
