"""Element-wise techniques: weight decay, cautious masking, gradient centralization, signs, periodic steps."""

from __future__ import annotations

import mlx.core as mx

from mlx_optim.functional.norms import norm
from mlx_optim.functional.types import Scalar


def decoupled_decay(p: mx.array, lr: Scalar, wd: Scalar, *, fixed: bool = False, ratio: Scalar = 1.0) -> mx.array:
    """AdamW-style decay ``p * (1 - wd * lr * ratio)``; ``fixed`` drops the ``lr`` factor."""
    factor = wd if fixed else wd * lr
    if not (isinstance(ratio, float) and ratio == 1.0):
        factor = factor * ratio
    return p * (1 - factor)


def coupled_decay(g: mx.array, p: mx.array, wd: Scalar) -> mx.array:
    """L2 penalty folded into the gradient: ``g + wd * p``."""
    return g + wd * p


def cautious_mask(update: mx.array, grad: mx.array) -> mx.array:
    """Cautious optimizers: zero the update where it disagrees with the gradient sign.

    The kept entries are rescaled by ``numel / (kept + 1)`` so the update keeps its size, computed as torch
    evaluates ``numel / tensor``: ``reciprocal(kept + 1) * numel`` (a direct division differs by one ulp now and
    then, which shows in bfloat16 updates).
    """
    mask = (update * grad > 0).astype(update.dtype)
    return update * mask * ((1.0 / (mask.sum() + 1)) * mask.size)


def centralize(g: mx.array, *, conv_only: bool = False) -> mx.array:
    """Gradient centralization: subtract the mean over all axes but the first.

    Applies to tensors with more than one dimension (more than three with ``conv_only``).
    """
    if g.ndim <= (3 if conv_only else 1):
        return g
    return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


def sign(x: mx.array) -> mx.array:
    """``mx.sign`` without a branch: ``(x > 0) - (x < 0)``, equal to it everywhere (0 for +-0 and NaN).

    MLX's ``Sign`` is two nested selects; fused by ``mx.compile`` on the CPU into a loop over data whose signs
    are random, they mispredict: Lion-style updates ran several times slower than with this form
    (benchmarks/suite.py; g++ keeps the selects as branches)."""
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


def sign_diff(a: mx.array, b: mx.array) -> mx.array:
    """``sign(a - b)`` as ``(a > b) - (a < b)``: equal everywhere (IEEE ``a - b`` is 0 only when ``a == b``, NaN
    when either is NaN or both are the same infinity) and one operation shallower, which helps ``mx.compile`` keep
    an update in one kernel (:mod:`mlx_optim.fusion`)."""
    return (a > b).astype(a.dtype) - (a < b).astype(a.dtype)


def softplus(x: mx.array, beta: Scalar, threshold: float = 20.0) -> mx.array:
    """``torch.nn.functional.softplus``: ``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``."""
    bx = beta * x
    return mx.where(bx > threshold, x, mx.logaddexp(bx, 0.0) / beta)


def orthogonalize(p: mx.array, g: mx.array, eps: float = 1e-16) -> mx.array:
    """OrthoGrad: remove the component of ``g`` along ``p`` and restore the norm of ``g`` (Ranger25's form: in the
    inputs' dtype, float32 norms, no parallel-gradient mask; :func:`orthograd` is pytorch_optimizer's)."""
    w, gf = p.reshape(-1), g.reshape(-1)
    g_ortho = orthogonal_part(w, gf, eps)
    g_ortho = g_ortho * (norm(gf) / (norm(g_ortho) + eps))
    return g_ortho.reshape(g.shape).astype(g.dtype)


def every(step: mx.array, k: int) -> mx.array:
    """``step % k == 0`` for the float32 step counter (periodic logic without Python branching)."""
    return mx.remainder(step, k) == 0


def loss_scalar(hp) -> mx.array:
    loss = hp.loss
    loss = loss if isinstance(loss, mx.array) else mx.array(loss)
    return loss.astype(mx.float32).reshape(())


def orthogonal_part(w: mx.array, g: mx.array, eps: Scalar) -> mx.array:
    """``g - <w, g> / (<w, w> + eps) w``: the part of ``g`` orthogonal to ``w`` (both flattened)."""
    return g - (mx.sum(w * g) / (mx.sum(w * w) + eps)) * w


def orthograd(p: mx.array, g: mx.array, eps: float = 1e-30) -> mx.array:
    """pytorch_optimizer's ``apply_orthogonal_gradients`` for one tensor (the OrthoGrad wrapper and feature).

    Remove the component of ``g`` along ``p`` (both flattened), rescale to ``||g||``; a gradient parallel to
    ``p`` (orthogonal part within ``4 * finfo.eps * ||g||``) becomes zero. Computed in float32 (float64 for
    float64 parameters). Unlike :func:`orthogonalize` it has that parallel-gradient mask and ``eps=1e-30``.
    """
    dtype = mx.float64 if p.dtype == mx.float64 else mx.float32
    w, gf = p.reshape(-1).astype(dtype), g.reshape(-1).astype(dtype)
    ortho = orthogonal_part(w, gf, eps)
    g_norm, o_norm = mx.sqrt(mx.sum(gf * gf)), mx.sqrt(mx.sum(ortho * ortho))
    rounding = 4.0 * (2.220446049250313e-16 if dtype == mx.float64 else 1.1920928955078125e-07)
    ortho = mx.where(o_norm <= rounding * g_norm, 0.0, ortho)
    return (ortho * (g_norm / (o_norm + eps))).reshape(g.shape).astype(g.dtype)
