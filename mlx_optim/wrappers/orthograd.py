"""OrthoGrad: step the inner optimizer with gradients made orthogonal to the weights (pytorch_optimizer)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx.utils import tree_map

from mlx_optim.registry import register
from mlx_optim.wrappers.base import Wrapper

__all__ = ["OrthoGrad", "orthograd"]


def orthograd(p: mx.array, g: mx.array, eps: float = 1e-30) -> mx.array:
    """pytorch_optimizer's ``apply_orthogonal_gradients`` for one tensor.

    Remove the component of ``g`` along ``p`` (both flattened), rescale to ``||g||``; a gradient parallel to
    ``p`` (orthogonal part within ``4 * finfo.eps * ||g||``) becomes zero. Computed in float32 (float64 for
    float64 parameters). Unlike ``functional.orthogonalize`` it has that parallel-gradient mask and ``eps=1e-30``.
    """
    dtype = mx.float64 if p.dtype == mx.float64 else mx.float32
    w, gf = p.reshape(-1).astype(dtype), g.reshape(-1).astype(dtype)
    proj = mx.sum(w * gf) / (mx.sum(w * w) + eps)
    ortho = gf - w * proj
    g_norm, o_norm = mx.sqrt(mx.sum(gf * gf)), mx.sqrt(mx.sum(ortho * ortho))
    rounding = 4.0 * (2.220446049250313e-16 if dtype == mx.float64 else 1.1920928955078125e-07)
    ortho = mx.where(o_norm <= rounding * g_norm, 0.0, ortho)
    return (ortho * (g_norm / (o_norm + eps))).reshape(g.shape).astype(g.dtype)


@register
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
        optimizer: The inner optimizer: an instance (any ``mlx_optim`` or ``mlx.optimizers`` optimizer, wrappers
            included), an optimizer class or a registered name (then built with ``optimizer_kwargs`` and
            ``learning_rate``). Required.
        learning_rate: The inner optimizer's learning rate, a float or a schedule (keyword-only): used to build it,
            or set on a given instance; ``None`` keeps the inner optimizer's own. Default ``None``.
        optimizer_kwargs: Keywords for the inner optimizer when it is given by name or class (keyword-only).
            Default ``None``.
        state_dtype: Accepted for the common signature; OrthoGrad keeps no state of its own (keyword-only).
            Default ``None``.
    """

    name = "orthograd"
    family = "wrapper"
    reference = "pytorch_optimizer.OrthoGrad"

    def __init__(
        self,
        optimizer: Any,
        *,
        learning_rate: Any = None,
        optimizer_kwargs: dict | None = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(
            optimizer, learning_rate=learning_rate, optimizer_kwargs=optimizer_kwargs, state_dtype=state_dtype
        )

    def wrap_update(self, gradients: Any, params: Any, loss: mx.array | None) -> Any:
        return self.inner_apply(tree_map(lambda g, p: orthograd(p, g), gradients, params), params, loss)
