"""OrthoGrad: step the inner optimizer with gradients made orthogonal to the weights (pytorch_optimizer)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx.utils import tree_map

from mlx_optim.functional import orthograd
from mlx_optim.registry import register
from mlx_optim.wrappers._args import wrapper_args
from mlx_optim.wrappers.base import Wrapper

__all__ = ["OrthoGrad", "orthograd"]


@register
@wrapper_args
class OrthoGrad(Wrapper):
    r"""OrthoGrad: a wrapper that feeds the inner optimizer the part of each gradient orthogonal to its weight tensor.

    .. math::
        g_\perp = g - \frac{\langle w, g\rangle}{\langle w, w\rangle + \epsilon} w,\qquad
        \tilde g = g_\perp \frac{\|g\|}{\|g_\perp\| + \epsilon}

    per tensor, with :math:`\epsilon = 10^{-30}`, and :math:`\tilde g = 0` when :math:`g` is parallel to
    :math:`w`. It keeps no state of its own.

    Paper: Prieto et al., "Grokking at the Edge of Numerical Stability", arXiv:2501.04697, 2025.

    Reference: ``pytorch_optimizer.OrthoGrad`` (parity-checked); its ``foreach`` knob is dropped.

    Args:
        state_dtype: Accepted for the common signature; OrthoGrad keeps no state of its own (keyword-only).
            Default ``None``.
    """

    name = "orthograd"
    reference = "pytorch_optimizer.OrthoGrad"

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        return self.inner_apply(tree_map(lambda g, p: orthograd(p, g), gradients, params), params, loss)
