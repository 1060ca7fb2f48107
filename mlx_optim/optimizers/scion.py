"""SCION and SCIONLight: steps along linear minimization oracles of norm balls."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.docargs import args_from
from mlx_optim.functional.matrix import (
    NSDtype,
    as_matrix,
    check_ns_dtype,
    newton_schulz,
    ns_iteration_dtype,
    round_scalar,
)
from mlx_optim.registry import register


class LMONorm(IntEnum):
    """Linear minimization oracle norms (pytorch_optimizer's ``LMONorm``)."""

    NONE = 0
    AUTO = 1
    SPECTRAL = 2
    SPECTRALCONV = 3
    SIGN = 4
    BIAS = 5
    COL = 6
    ROW = 7


# Options each norm accepts (``norm_kwargs``) with their defaults; NONE, AUTO and BIAS take none.
_LMO_OPTIONS: dict[int, dict[str, Any]] = {
    LMONorm.SPECTRAL: {"max_scale": False, "normalize": True, "num_steps": 5},
    LMONorm.SPECTRALCONV: {"num_steps": 5},
    LMONorm.SIGN: {"zero_init": False, "normalize": True},
    LMONorm.COL: {"normalized": False, "transpose": False},
    LMONorm.ROW: {"normalized": True, "transpose": False},
}


def _lmo_options(owner: str, norm_type: int, norm_kwargs: dict | None) -> dict[str, Any]:
    if norm_type not in LMONorm._value2member_map_:
        raise ValueError(f"{owner}: norm_type={norm_type!r} is not an LMONorm value")
    defaults = _LMO_OPTIONS.get(norm_type, {})
    unknown = set(norm_kwargs or {}) - set(defaults)
    if unknown and norm_type not in (LMONorm.NONE, LMONorm.AUTO, LMONorm.BIAS):
        raise ValueError(f"{owner}: norm_kwargs {sorted(unknown)} are not options of {LMONorm(norm_type).name}")
    return {**defaults, **{k: v for k, v in (norm_kwargs or {}).items() if k in defaults}}


def lmo_direction(
    g: mx.array,
    norm_type: int,
    options: dict[str, Any] | None = None,
    eps: float = 1e-8,
    ns_dtype: NSDtype = mx.bfloat16,
) -> mx.array:
    """The LMO direction of ``g`` for ``norm_type`` (before the radius ``scale``), as pytorch_optimizer's ``Norm.lmo``.

    Spectral directions are Newton–Schulz polar factors in bfloat16 (returned in
    bfloat16, like the reference, and scaled by a bfloat16-rounded factor as in its
    default batched ``lmo_foreach`` path); the other norms return ``g``'s dtype.
    """
    opts = {**_LMO_OPTIONS.get(norm_type, {}), **(options or {})}
    if norm_type == LMONorm.AUTO:
        if g.ndim <= 1:
            norm_type = LMONorm.BIAS
        elif g.ndim == 2:
            norm_type = LMONorm.SPECTRAL
        elif g.ndim in (3, 4):
            norm_type = LMONorm.SPECTRALCONV
        else:
            raise ValueError(f"SCION: LMONorm.AUTO has no norm for {g.ndim}-D parameters")
        opts = dict(_LMO_OPTIONS.get(norm_type, {}))
    if norm_type == LMONorm.NONE:
        return g
    if norm_type == LMONorm.BIAS:
        rms = mx.sqrt(mx.mean(mx.square(g), axis=0, keepdims=True)) if g.ndim else mx.abs(g)
        return g / (rms + eps)
    if norm_type in (LMONorm.SPECTRAL, LMONorm.SPECTRALCONV):
        if g.ndim < 2:
            raise ValueError(f"SCION: {LMONorm(norm_type).name} needs a parameter with ndim >= 2")
        o = newton_schulz(as_matrix(g), opts["num_steps"], dtype=ns_iteration_dtype(ns_dtype, mx.bfloat16))
        o = o.reshape(g.shape)
        d_out, d_in = g.shape[0], g.shape[1]
        if norm_type == LMONorm.SPECTRALCONV:
            scale = math.sqrt(d_out / d_in) / math.prod(g.shape[2:])
        else:
            scale = math.sqrt(d_out / d_in) if opts["normalize"] else math.sqrt(d_out)
            scale = max(1.0, scale) if opts["max_scale"] else scale
        # the reference's default (batched) path multiplies the bfloat16 directions with
        # ``torch._foreach_mul_``, which rounds the scalar to bfloat16 first
        return (o.astype(mx.float32) * round_scalar(scale, o.dtype)).astype(o.dtype)
    if norm_type == LMONorm.SIGN:
        if g.ndim < 2:
            raise ValueError("SCION: LMONorm.SIGN needs a parameter with ndim >= 2")
        return F.sign(g) / g.shape[1] if opts["normalize"] else F.sign(g)
    if g.ndim != 2:
        raise ValueError(f"SCION: {LMONorm(norm_type).name} needs a 2-D parameter")
    x = g.T if opts["transpose"] else g
    if norm_type == LMONorm.COL:
        d_in, d_out = x.shape
        rms = mx.sqrt(mx.sum(mx.square(x), axis=0, keepdims=True)) / math.sqrt(d_in)
        if opts["normalized"]:
            rms = rms * d_out
    else:  # ROW
        rms = mx.sqrt(mx.sum(mx.square(x), axis=-1, keepdims=True))
        if opts["normalized"]:
            rms = rms * math.sqrt(x.shape[-1])
    x = x / (rms + eps)
    return x.T if opts["transpose"] else x


NormChoice = int | Callable[[str, mx.array], "int | tuple[int, dict]"]


@register
class SCION(Optimizer):
    r"""SCION: momentum steps along the linear minimization oracle (LMO) of a norm ball chosen per layer.

    Momentum averaged with weight ``momentum`` on the new gradient, then a step along the LMO direction of
    a norm ball of radius ``scale``:

    .. math::
        d_t = (1-\alpha) d_{t-1} + \alpha g_t,\quad
        p_t = (1 - \eta [\text{constraint}])\, p_{t-1} - \eta\, \text{scale}\cdot u(d_t),\quad
        u(d) = \arg\max_{\|x\| \le 1}\langle d, x\rangle

    with :math:`u` the reference's ``Norm.lmo`` (:func:`lmo_direction`): ``AUTO`` picks RMS-normalization for
    vectors, the Newton–Schulz polar factor (bfloat16) scaled by :math:`\sqrt{d_{out}/d_{in}}` for matrices
    and convolution kernels; ``SIGN``, ``COL``, ``ROW``, ``BIAS``, ``NONE`` as in the reference, with
    ``norm_kwargs``. Weight decay applies only without ``constraint``.

    Paper: Pethick et al., "Training Deep Learning Models with Norm-Constrained LMOs", ICML 2025,
    arXiv:2502.07529.

    Reference: ``pytorch_optimizer.SCION`` (parity-checked). Differences: parameter groups become per-leaf
    choices (``norm_type`` may be a callable); the reference's ``init()`` (re-initializing parameters on the
    norm ball with torch's RNG) is not ported.

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``1e-3``.
        momentum: Weight :math:`\alpha` of the new gradient in the momentum average (``1 -`` the usual
            momentum), in (0, 1]. Default ``0.1``.
        constraint: Constrained (conditional-gradient) updates: shrink ``p`` by :math:`1-\eta` before the step,
            keeping it in the norm ball of radius ``scale``; weight decay is then not applied. Default ``False``.
        norm_type: The norm: an :class:`LMONorm` value (``NONE``, ``AUTO``, ``SPECTRAL``, ``SPECTRALCONV``,
            ``SIGN``, ``BIAS``, ``COL``, ``ROW``) or matching integer, or a callable ``(path, parameter) ->
            LMONorm | (LMONorm, norm_kwargs)`` choosing per leaf. Default ``LMONorm.AUTO``.
        norm_kwargs: Options of the norm (``SPECTRAL``: ``max_scale``, ``normalize``, ``num_steps``;
            ``SPECTRALCONV``: ``num_steps``; ``SIGN``: ``zero_init``, ``normalize``; ``COL`` / ``ROW``:
            ``normalized``, ``transpose``). Default ``None``.
        scale: Radius of the norm ball, the update scale (> 0). Default ``1.0``.
        weight_decay: Weight decay coefficient (>= 0), without ``constraint`` only. Default ``0.0``.
        weight_decouple: Decoupled weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        ns_dtype: dtype of the Newton–Schulz iteration of the spectral norms (keyword-only): ``mx.bfloat16``,
            ``mx.float16``, ``mx.float32`` or their names; ``None`` (default): the reference's bfloat16 on a GPU; on
            the CPU backend bfloat16 as well where its products run through MKL's bfloat16 GEMM on a processor with
            AVX-512 (Linux x86-64 with the ``native`` extra, :mod:`mlx_optim.native`), else float32 (MLX's own CPU
            matmul has no fast low-precision path).
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "scion"
    family = "orthogonalized"
    reference = "pytorch_optimizer.SCION"

    def __init__(
        self,
        learning_rate: Tunable = 1e-3,
        momentum: Tunable = 0.1,
        constraint: bool = False,
        norm_type: NormChoice = LMONorm.AUTO,
        norm_kwargs: dict | None = None,
        scale: Tunable = 1.0,
        weight_decay: Tunable = 0.0,
        weight_decouple: bool = True,
        maximize: bool = False,
        *,
        ns_dtype: NSDtype = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("momentum", momentum, 0.0, 1.0, "(]")
        self._hyper("scale", scale, 0.0, None, "(]")
        self._hyper("weight_decay", weight_decay, 0.0)
        if not callable(norm_type):
            _lmo_options(type(self).__name__, norm_type, norm_kwargs)
        self.norm_type, self.norm_kwargs = norm_type, dict(norm_kwargs or {})
        self.constraint, self.weight_decouple = bool(constraint), bool(weight_decouple)
        try:
            self.ns_dtype = check_ns_dtype(ns_dtype)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None

    def leaf_norm(self, p: mx.array) -> tuple[int, dict[str, Any]]:
        """``(norm_type, options)`` of the current leaf."""
        choice, kwargs = self.norm_type, self.norm_kwargs
        if callable(choice):
            choice = choice(self._leaf_path, p)
            if isinstance(choice, tuple):
                choice, kwargs = choice
        return int(choice), _lmo_options(type(self).__name__, choice, kwargs)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["d"] = self.zeros(parameter)

    def descend(self, p: mx.array, d: mx.array) -> mx.array:
        hp = self.hp
        norm_type, opts = self.leaf_norm(p)
        u = lmo_direction(d, norm_type, opts, ns_dtype=self.ns_dtype)
        scale = hp.scale if u.dtype == mx.float32 else hp.scale.astype(u.dtype).astype(mx.float32)  # foreach rounding
        u = (u.astype(mx.float32) * scale).astype(u.dtype)
        if self.constraint:
            p = p * (1 - hp.lr)
        return p - hp.lr * u.astype(p.dtype)

    def _decay(self, p: mx.array, g: mx.array) -> tuple[mx.array, mx.array]:
        if self.constraint:
            return p, g
        return self.apply_weight_decay(p, g, decouple=self.weight_decouple)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        p, g = self._decay(p, g)
        d = F.torch_lerp(state["d"], g, self.hp.momentum)
        state["d"] = d
        return self.descend(p, d)


@register
@args_from(SCION)
class SCIONLight(SCION):
    r"""SCIONLight: :class:`SCION` with the momentum kept in a gradient accumulation buffer.

    The reference never zeroes ``p.grad``: backward adds the new gradient to the buffer, the step uses the
    LMO direction of the buffer and then scales it by :math:`1-\alpha`. Here the buffer is optimizer state:

    .. math::
        d_t = (1-\alpha) d_{t-1} + g_t,\quad
        p_t = (1 - \eta [\text{constraint}])\, p_{t-1} - \eta\, \text{scale}\cdot u(d_t)

    (coupled weight decay is added to :math:`g_t` and so, as in the reference, kept in the buffer).

    Paper: Pethick et al., "Training Deep Learning Models with Norm-Constrained LMOs", ICML 2025,
    arXiv:2502.07529.

    Reference: ``pytorch_optimizer.SCIONLight`` (parity-checked). Differences from the reference, which
    mutates ``p.grad`` in place: ``maximize`` negates only the new gradient (the reference negates the whole
    accumulated buffer every step, flipping the sign of the history), and ``momentum=1`` empties the buffer
    (the reference skips the scaling then, so the buffer keeps everything).

    Args:
        momentum: The buffer is scaled by :math:`1-\alpha` after each step, in (0, 1]. Default ``0.1``.
    """

    name = "scionlight"
    reference = "pytorch_optimizer.SCIONLight"

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["grad_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        p, g = self._decay(p, g)
        d = state["grad_buffer"] + g
        state["grad_buffer"] = d * (1 - self.hp.momentum)
        return self.descend(p, d)
