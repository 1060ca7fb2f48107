"""Shared optimizer math as pure functions of arrays, one module per topic.

Every function takes and returns ``mx.array`` values (scalars may be Python numbers or 0-d arrays) and has no
side effects, so the same function serves the eager path, the ``mx.compile``d path and a fused kernel's reference.
Optimizers use ``from mlx_optim import functional as F`` and ``F.<name>``.
"""

from mlx_optim.functional.elementwise import (  # noqa: F401
    cautious_mask,
    centralize,
    coupled_decay,
    decoupled_decay,
    every,
    loss_scalar,
    orthogonalize,
    sign,
    sign_diff,
    softplus,
)
from mlx_optim.functional.factored import (  # noqa: F401
    clip_by_rms,
    factored_moments,
    factored_rsqrt,
)
from mlx_optim.functional.lookahead import (  # noqa: F401
    lookahead_merge,
)
from mlx_optim.functional.matrix import (  # noqa: F401
    NS_COEFFICIENTS,
    Weights,
    as_matrix,
    cautious_lowp,
    eigenvectors,
    gram_newton_schulz,
    identity,
    inverse_root_svd,
    merge_small_dims,
    newton_schulz,
    newton_schulz5,
    newton_schulz_weights,
    ns_coeff,
    round_scalar,
)
from mlx_optim.functional.moments import (  # noqa: F401
    ademamix_schedules,
    ams_bound_denom,
    bias_correction,
    ema,
    lerp,
    momentum_buffer,
    rectification,
    stable_adamw_rms,
    torch_lerp,
)
from mlx_optim.functional.norms import (  # noqa: F401
    SUM_SQ_SPLIT,
    agc,
    global_norm,
    norm,
    norm_kd,
    normalize_dim0,
    normalize_gradient,
    rms,
    sum_all,
    sum_of_squares,
    sum_sq,
    unit_norm,
)
from mlx_optim.functional.projections import (  # noqa: F401
    PROJECTION_TYPES,
    Basis,
    ProjectionFilter,
    adamp_projection,
    axis_norm,
    basis_shapes,
    canonical_svd,
    default_projection_filter,
    growth_limiter,
    project,
    project_back,
    projected_shape,
    projection_side,
    random_basis,
    svd_basis,
    svd_rank,
)
from mlx_optim.functional.subset_norm import (  # noqa: F401
    closest_smaller_divisor,
    sn_expand,
    sn_reduce,
    subset_size_for,
)
from mlx_optim.functional.types import (  # noqa: F401
    Scalar,
)
