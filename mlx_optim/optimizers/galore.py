"""GaLore (Zhao et al., 2024): gradient low-rank projection."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.projections import (
    PROJECTION_TYPES,
    Basis,
    ProjectionFilter,
    basis_shapes,
    default_projection_filter,
    project,
    project_back,
    projected_shape,
    projection_side,
    svd_basis,
    svd_rank,
)
from mlx_optim.refresh import HostRefresh, every
from mlx_optim.registry import register

# The Args: entries of the projection keywords, shared by GaLore and APOLLO (and Fira, which documents GaLore's).
PROJECTION_ARGS = """\
update_proj_gap (int): Recompute the basis every this many steps (>= 1), and on the first. Default ``50``.
scale: Factor :math:`\\alpha` of the projected-back update. Default ``1.0``.
projection_type: Which side of an ``(m, n)`` matrix is projected: ``"std"`` (the longer side away:
    right when ``m >= n``), ``"reverse_std"`` (the shorter side), ``"right"`` (:math:`G P^\\top`),
    ``"left"`` (:math:`P^\\top G`), ``"full"`` (both) or ``"random"`` (the side of ``"std"``). Default
    ``"std"``.
projection_filter: ``callable(path, parameter) -> bool`` choosing the projected leaves among the 2-D ones
    (``path`` like ``"layers.0.weight"``); the others get the plain, unprojected update. Default ``None``:
    every 2-D leaf.
"""


def document_projection(cls: type) -> type:
    """Put :data:`PROJECTION_ARGS` where ``cls``'s docstring has the line ``{projection_args}`` (in ``Args:``)."""
    marker = "        {projection_args}\n"
    assert marker in cls.__doc__, cls
    cls.__doc__ = cls.__doc__.replace(marker, textwrap.indent(PROJECTION_ARGS, " " * 8))
    return cls


def document_args_of(parent: type) -> Callable[[type], type]:
    """A class decorator appending ``parent``'s ``Args:`` section to the docstring (a subclass with its keywords)."""

    def decorate(cls: type) -> type:
        doc = parent.__doc__
        cls.__doc__ = cls.__doc__.rstrip() + "\n\n" + doc[doc.index("    Args:") :]
        return cls

    return decorate


class _Projected(HostRefresh, Optimizer):
    """Adam with GaLore-projected matrix leaves; subclasses choose the basis and the update."""

    svd_rank_none = False  # Conda: full-rank SVD basis, ``rank`` is not an option

    def _projection_options(self, rank, update_proj_gap, scale, projection_type, projection_filter) -> None:
        if rank is not None:
            self._check("rank", rank, 1)
        self._check("update_proj_gap", update_proj_gap, 1)
        self._hyper("scale", scale)
        self._choice("projection_type", projection_type, PROJECTION_TYPES)
        self.rank = None if rank is None else int(rank)
        self.update_proj_gap = int(update_proj_gap)
        self.projection_type = projection_type
        self.projection_filter = projection_filter or default_projection_filter

    def step_scalars(self, hp) -> None:
        hp.step_size = hp.lr * mx.sqrt(hp.bias_correction("beta2")) / hp.bias_correction("beta1")
        hp.first = hp.step == 1
        self.refresh_scalars(hp)

    def refresh_flags(self, step):
        return {"refresh": (step == 1) | every(step, self.update_proj_gap)}

    def projects(self, parameter: mx.array) -> bool:
        return parameter.ndim == 2 and bool(self.projection_filter(self._leaf_path, parameter))

    def basis_rank(self, shape: Sequence[int]) -> int:
        return svd_rank(shape, self.rank)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.projects(parameter):
            side = projection_side(parameter.shape, self.projection_type)
            rank = self.basis_rank(parameter.shape)
            for k, shape in basis_shapes(parameter.shape, side, rank).items():
                state[k] = self.zeros(parameter, shape)
            low_shape = projected_shape(parameter.shape, side, rank)
            self.init_moments(parameter, state, low_shape)
        else:
            self.init_moments(parameter, state, parameter.shape)

    def init_moments(self, parameter: mx.array, state: dict, low_shape) -> None:
        state["exp_avg"] = self.zeros(parameter, low_shape)
        state["exp_avg_sq"] = self.zeros(parameter, low_shape)

    def is_projected(self, state: dict) -> bool:
        return "proj_left" in state or "proj_right" in state

    def side(self, shape) -> str:
        return projection_side(shape, self.projection_type)

    def new_basis(self, x: mx.array, state: dict) -> Basis:
        return svd_basis(x, self.side(x.shape), self.rank)

    def refresh_basis(self, x: mx.array, state: dict) -> Basis:
        """The basis for this step: recomputed from ``x`` on refresh steps (only then when the host knows the
        step, see :mod:`mlx_optim.refresh`), else the stored one."""
        return self.select_basis(state, lambda: self.new_basis(x, state))

    def select_basis(self, state: dict, new: Callable[[], Basis]) -> Basis:
        """Store and return ``new()`` on refresh steps, else the stored basis."""
        keys = [k for k in ("proj_left", "proj_right") if k in state]
        flag = self.host_flag("refresh")
        if flag is False:
            return tuple(state[k] for k in keys)
        fresh = new()
        for k, b in zip(keys, fresh):
            b = b.astype(state[k].dtype)
            state[k] = b if flag else mx.where(self.hp.refresh, b, state[k])
        return tuple(state[k] for k in keys)

    def adam_direction(self, g: mx.array, state: dict) -> mx.array:
        """``m / (sqrt(v) + eps)`` after the moment updates (no bias correction: it is in ``step_size``)."""
        hp = self.hp
        m = F.lerp(state["exp_avg"], g, hp.one_minus_beta1)
        v = hp.beta2 * state["exp_avg_sq"] + hp.one_minus_beta2 * mx.square(g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        return m / (mx.sqrt(v) + hp.eps)


@register
@document_projection
class GaLore(_Projected):
    r"""GaLore: AdamW whose moments live in a rank-``r`` subspace spanned by the gradient's leading singular vectors.

    AdamW whose moments live in a rank-``r`` subspace of each projected matrix: the basis
    :math:`P` holds the leading singular vectors of the gradient, recomputed every
    ``update_proj_gap`` steps (and on the first).

    .. math::
        R_t = P^\top G_t \ (\text{or } G_t P^\top),\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) R_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) R_t^2 \\
        W_t = \big(W_{t-1} - \eta_t\, \alpha\, P \tfrac{m_t}{\sqrt{v_t}+\epsilon}\big)(1 - \eta\lambda),\quad
        \eta_t = \eta \tfrac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}

    with ``scale`` :math:`\alpha`. Unprojected leaves take the same step without :math:`P`.
    Weight decay is decoupled and applied after the step, as in the reference.

    Paper: "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection" (Zhao et al.), ICML 2024,
    arXiv:2403.03507. Reference: ``pytorch_optimizer.GaLore``, same keywords and defaults.

    The reference projects the 2-D parameters of the parameter groups that carry ``rank`` /
    ``update_proj_gap`` / ``scale`` / ``projection_type`` keys; here these are keyword-only arguments (with
    ``GaLoreProjector``'s defaults) and ``projection_filter`` picks the projected leaves.
    ``projection_filter=lambda path, p: False`` gives the reference's behaviour for a group without ``rank``;
    to project some layers with their own rank, use one optimizer per set of settings. The reference
    recomputes the basis on the first step and whenever ``step % update_proj_gap == 0``; so does
    ``apply_gradients`` here, reading the step counter on the host. Inside your own ``mx.compile`` (the counter is
    a tracer there) the basis is computed on *every* step (a CPU SVD per projected matrix) and adopted with
    ``mx.where`` on refresh steps: the same numbers, at a cost the reference pays only every ``update_proj_gap``
    steps.

    Singular vectors are defined up to sign, and LAPACK builds differ in the signs they return; since the
    moments live in the projected coordinates across refreshes, the sign convention changes the trajectory
    after the first refresh. The basis fixes it: each left singular vector is flipped so that its
    largest-magnitude entry is positive (the right singular vector with it); the parity rows run the reference
    with the same convention applied to ``torch.linalg.svd``.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1e-3``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first and second moments.
            Default ``(0.9, 0.999)``.
        weight_decay: Decoupled weight decay :math:`\lambda` (>= 0), applied after the step. Default ``0.0``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-6``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        rank (int | None): Rank :math:`r` (>= 1) of the projection; ``None``: every singular vector
            (``min(m, n)``). Default ``128``.
        {projection_args}
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "galore"
    family = "memory-efficient"
    reference = "pytorch_optimizer.GaLore"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.0,
        eps: Tunable = 1e-6,
        maximize: bool = False,
        *,
        rank: int | None = 128,
        update_proj_gap: int = 50,
        scale: Tunable = 1.0,
        projection_type: str = "std",
        projection_filter: ProjectionFilter | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        self._projection_options(rank, update_proj_gap, scale, projection_type, projection_filter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        if self.is_projected(state):
            side = self.side(g.shape)
            basis = self.refresh_basis(g, state)
            update = project_back(self.adam_direction(project(g, basis, side), state), basis, side, hp.scale)
        else:
            update = self.adam_direction(g, state)
        p, _ = self.apply_weight_decay(p - hp.step_size * update, g, decouple=True)
        return p
