"""SpectralSphere: spectral updates tangent to the spectral sphere of each weight matrix."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable
from mlx_optim.functional.matrix import (
    NSDtype,
    check_ns_dtype,
    low_precision_newton_schulz,
    ns_iteration_dtype,
    rounded_ns_step,
)
from mlx_optim.registry import register

MSIGN_COEFFICIENTS = [  # sso.py's Polar Express schedule (rounded to 4 decimals there)
    (8.2051, -22.9019, 16.4607),
    (4.0664, -2.8612, 0.5184),
    (3.9096, -2.8234, 0.5250),
    (3.2856, -2.4153, 0.4853),
    (2.2779, -1.6198, 0.3985),
    (1.8726, -1.2307, 0.3585),
    (1.8564, -1.2132, 0.3568),
    (1.8750, -1.2500, 0.3750),
]


def _rounded(x: mx.array, dtype: mx.Dtype) -> mx.array:
    """``x`` rounded to ``dtype`` and computed on in float32 (torch's low-precision CPU ops round once per op);
    ``x`` itself for float32."""
    return x if dtype == mx.float32 else x.astype(dtype).astype(mx.float32)


def _normalize(x: mx.array, axis: int, dtype: mx.Dtype) -> mx.array:
    """``torch.nn.functional.normalize(x, dim=axis)`` of ``x`` in ``dtype`` (norm and quotient rounded)."""
    x = _rounded(x, dtype)
    n = _rounded(mx.sqrt(mx.sum(mx.square(x), axis=axis, keepdims=True)), dtype)
    return _rounded(x / mx.maximum(n, 1e-12), dtype)


def leading_singular_vectors(w: mx.array, steps: int, dtype: mx.Dtype = mx.bfloat16) -> tuple[mx.array, mx.array]:
    """sso.py's bilateral power iteration (in ``dtype``, bfloat16 there): the leading left/right singular vectors
    ``(u, v)`` of ``w`` as columns, in float32."""
    w = _rounded(w, dtype)
    v = mx.ones((w.shape[1], 1), dtype=mx.float32)
    for _ in range(steps):
        v = _normalize(w.T @ _rounded(w @ v, dtype), 0, dtype)
    return _normalize(w @ v, 0, dtype), v


def msign(x: mx.array, steps: int, dtype: mx.Dtype = mx.bfloat16) -> mx.array:
    """sso.py's ``msign``: Frobenius-normalize in float32, then Polar Express Newton–Schulz in ``dtype`` (bfloat16
    there; every product computed in float32 and rounded once). A bfloat16 iteration on the CPU backend runs as one
    native task where :mod:`mlx_optim.native` provides it (the same products and roundings)."""
    transpose = x.shape[0] > x.shape[1]
    x = x.T if transpose else x
    x = _rounded(x / mx.maximum(mx.sqrt(mx.sum(mx.square(x))), 1e-7), dtype)
    coeffs = [MSIGN_COEFFICIENTS[min(i, len(MSIGN_COEFFICIENTS) - 1)] for i in range(steps)]
    iterate = low_precision_newton_schulz(x, dtype) if steps else None
    if iterate is not None:
        x = iterate(x.astype(dtype), coeffs).astype(mx.float32)
    else:
        for w in coeffs:
            x = rounded_ns_step(x, w, dtype)
    return x.T if transpose else x


def solve_lambda(
    x: mx.array, theta: mx.array, steps: int, tolerance: float, max_iterations: int, dtype: mx.Dtype = mx.bfloat16
) -> mx.array:
    r"""The multiplier :math:`\lambda` with :math:`\langle\Theta, \operatorname{msign}(X + \lambda\Theta)\rangle = 0`.

    sso.py's ``solve_lambda_foreach`` for one matrix, branch-free: from :math:`\lambda = 0`,
    steps of :math:`\pm 10^{-3}` doubling up to 10 times look for a sign change of ``f``
    (in ``dtype``), then ``max_iterations`` bisection steps keep the best :math:`\lambda` (0
    when no bracket is found). Every evaluation runs; finished searches are masked.
    """

    def f(lam: mx.array) -> mx.array:
        phi = msign(x + _rounded(lam * theta, dtype), steps, dtype)
        return _rounded(mx.sum(_rounded(theta * phi, dtype)), dtype)

    prev = mx.array(0.0)
    prev_f = f(prev)
    step = mx.where(prev_f < 0, 1e-3, -1e-3)
    found = mx.abs(prev_f) < tolerance
    left = right = prev
    left_f = right_f = prev_f
    for _ in range(10):
        cur = prev + step
        cur_f = f(cur)
        crossing = ~found & ((prev_f <= 0) != (cur_f <= 0))
        up = prev_f <= 0
        left = mx.where(crossing, mx.where(up, prev, cur), left)
        right = mx.where(crossing, mx.where(up, cur, prev), right)
        left_f = mx.where(crossing, mx.where(up, prev_f, cur_f), left_f)
        right_f = mx.where(crossing, mx.where(up, cur_f, prev_f), right_f)
        found = found | crossing
        prev, prev_f, step = cur, cur_f, step * 2.0
    use_left = mx.abs(left_f) < mx.abs(right_f)
    best = mx.where(use_left, left, right)
    best_f = mx.where(use_left, left_f, right_f)
    active = found & (mx.abs(best_f) > tolerance)
    for _ in range(max_iterations):
        mid = (left + right) * 0.5
        mid_f = f(mid)
        improved = active & (mx.abs(mid_f) < mx.abs(best_f))
        best = mx.where(improved, mid, best)
        best_f = mx.where(improved, mid_f, best_f)
        active = active & (mx.abs(mid_f) > tolerance)
        left = mx.where(active & (mid_f < 0), mid, left)
        right = mx.where(active & (mid_f >= 0), mid, right)
    return best


def spectral_ball_update(
    w: mx.array,
    m: mx.array,
    power_steps: int,
    msign_steps: int,
    tolerance: float,
    max_iterations: int,
    dtype: mx.Dtype = mx.bfloat16,
) -> mx.array:
    r"""sso.py's ``compute_spectral_ball_update``: :math:`\operatorname{msign}(\hat M + \lambda\, u v^\top)`.

    :math:`\hat M = M / \max(\|M\|_F, 10^{-8})`, :math:`u, v` the power-iteration singular vectors of ``w``
    (:func:`leading_singular_vectors`), :math:`\lambda` from :func:`solve_lambda` so that the update has no
    component along :math:`u v^\top`. The iterations run in ``dtype`` (bfloat16 in the reference).
    """
    m = m.astype(mx.float32)
    m = m / mx.maximum(mx.sqrt(mx.sum(mx.square(m))), 1e-8)
    u, v = leading_singular_vectors(w, power_steps, dtype)
    theta = _rounded(u @ v.T, dtype)
    lam = solve_lambda(m, theta, msign_steps, tolerance, max_iterations, dtype)
    return msign(m + _rounded(lam * theta, dtype), msign_steps, dtype)


@register
class SpectralSphere(Optimizer):
    r"""SpectralSphere: matrix-sign updates tangent to the spectral sphere of each weight matrix.

    (Nesterov) momentum is normalized and its matrix sign taken after adding the multiple of the weight's
    leading singular direction :math:`\Theta = u v^\top` that makes the update orthogonal to :math:`\Theta`
    (first order, the update keeps the spectral norm of the weight):

    .. math::
        b_t = \mu b_{t-1} + (1-\mu) g_t,\quad m_t = (1-\mu) g_t + \mu b_t \ (\text{nesterov, else } b_t) \\
        \lambda_t:\ \langle \Theta_t, \operatorname{msign}(\hat m_t + \lambda_t \Theta_t)\rangle = 0,\quad
        p_t = p_{t-1} - \eta\, \operatorname{msign}(\hat m_t + \lambda_t \Theta_t)

    with :math:`\hat m = m / \|m\|_F`, :math:`u, v` from ``power_iteration_steps`` of bilateral power
    iteration and msign ``msign_steps`` Polar Express Newton–Schulz steps (in ``ns_dtype``: bfloat16 as the
    reference by default, except on a CPU backend without the native bfloat16 loop, where float32 is faster).
    Weight decay (``weight_decay`` at the learning rate) is decoupled unless ``weight_decouple=False``. The
    multiplier is found by a bracket search and bisection without early exits: 11 + ``solver_max_iterations``
    msign evaluations per matrix per step, so keep ``solver_max_iterations`` small for big matrices (the float32
    bisection interval stops shrinking after about 30 halvings).

    Paper: arXiv:2601.08393 (controlled LLM training on the spectral sphere), 2026; the reference also cites
    "Spectral MuP: Spectral Control of Feature Learning" and Bernstein & Newhouse, "Modular Duality in Deep
    Learning", arXiv:2410.21265.

    Reference: ``pytorch_optimizer.SpectralSphere`` (``sso.py``; parity-checked). The multiplier follows the
    reference's batched solver (``solve_lambda_foreach``, its path with ``foreach=True``); its default CPU
    path (scalar bisection in float64) gives the same ``lambda`` up to float32 rounding. Like the reference,
    only 2-D parameters are supported: a tree with other parameters needs ``spectral_filter``; the leaves it
    rejects are left unchanged (as parameters not given to the reference optimizer).

    Args:
        learning_rate: Step size :math:`\eta`, a float or a schedule (a callable of the step). Default ``3e-4``.
        momentum: Momentum factor :math:`\mu`, in [0, 1). Default ``0.9``.
        weight_decay: Weight decay coefficient (>= 0). Default ``1e-2``.
        weight_decouple: Decoupled (AdamW) weight decay, ``p * (1 - lr * weight_decay)``, instead of adding
            ``weight_decay * p`` to the gradient. Default ``True``.
        nesterov: Use the Nesterov combination :math:`(1-\mu) g_t + \mu b_t` instead of the buffer.
            Default ``True``.
        power_iteration_steps: Bilateral power-iteration steps for :math:`u, v` (> 0). Default ``10``.
        msign_steps: Polar Express Newton–Schulz steps per matrix sign (> 0). Default ``5``.
        solver_tolerance_f: Tolerance on :math:`\langle\Theta, \operatorname{msign}(\cdot)\rangle` at which
            the multiplier search stops improving. Default ``1e-8``.
        solver_max_iterations: Bisection steps of the multiplier search (>= 0). Default ``100``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        spectral_filter: ``callable(path, parameter) -> bool`` selecting the updated leaves (keyword-only);
            ``None`` selects all, and every one must then be 2-D. Default ``None``.
        ns_dtype: dtype of the power iteration, the Newton–Schulz iterations and the multiplier search
            (keyword-only): ``mx.bfloat16`` (the reference's), ``mx.float16``, ``mx.float32`` or their names.
            ``None`` (default): bfloat16 on a GPU, and on the CPU backend where the Newton–Schulz loop runs natively
            and fast (:func:`mlx_optim.functional.matrix.fast_bf16_newton_schulz`), else float32 (MLX's CPU has no
            fast bfloat16 matmul; bfloat16 there is float32 products rounded after each operation).
        state_dtype: dtype of the optimizer state. ``None`` (default): float32 for bfloat16/float16
            parameters, the parameter's dtype otherwise; a bfloat16 state is written back with stochastic
            rounding.
    """

    name = "spectralsphere"
    family = "orthogonalized"
    reference = "pytorch_optimizer.SpectralSphere"

    def __init__(
        self,
        learning_rate: Tunable = 3e-4,
        momentum: Tunable = 0.9,
        weight_decay: Tunable = 1e-2,
        weight_decouple: bool = True,
        nesterov: bool = True,
        power_iteration_steps: int = 10,
        msign_steps: int = 5,
        solver_tolerance_f: float = 1e-8,
        solver_max_iterations: int = 100,
        maximize: bool = False,
        *,
        spectral_filter: Callable[[str, mx.array], bool] | None = None,
        ns_dtype: NSDtype = None,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("momentum", momentum, 0.0, 1.0, "[)")
        self._check("power_iteration_steps", power_iteration_steps, 0, None, "(]")
        self._check("msign_steps", msign_steps, 0, None, "(]")
        self._check("solver_max_iterations", solver_max_iterations, 0, None, "[]")
        if spectral_filter is not None and not callable(spectral_filter):
            raise ValueError(f"SpectralSphere: spectral_filter={spectral_filter!r} must be a callable(path, parameter)")
        self.weight_decouple, self.nesterov = bool(weight_decouple), bool(nesterov)
        self.power_iteration_steps, self.msign_steps = int(power_iteration_steps), int(msign_steps)
        self.solver_tolerance_f, self.solver_max_iterations = float(solver_tolerance_f), int(solver_max_iterations)
        self.spectral_filter = spectral_filter
        self.ns_dtype = check_ns_dtype(ns_dtype)

    def selected(self, parameter: mx.array) -> bool:
        if self.spectral_filter is not None and not self.spectral_filter(self._leaf_path, parameter):
            return False
        if parameter.ndim != 2:
            raise ValueError(
                f"SpectralSphere only supports 2D parameters; '{self._leaf_path}' has shape {parameter.shape} "
                "(exclude it with spectral_filter)"
            )
        return True

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self.selected(parameter):
            state["momentum_buffer"] = self.zeros(parameter)

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        if not self.selected(p):
            return p
        hp = self.hp
        p, g = self.apply_weight_decay(p, g, decouple=self.weight_decouple)
        buf = F.torch_lerp(state["momentum_buffer"], g, hp.one_minus_momentum)
        state["momentum_buffer"] = buf
        m = F.torch_lerp(g, buf, hp.momentum) if self.nesterov else buf
        u = spectral_ball_update(
            p,
            m,
            self.power_iteration_steps,
            self.msign_steps,
            self.solver_tolerance_f,
            self.solver_max_iterations,
            ns_iteration_dtype(self.ns_dtype, mx.bfloat16),
        )
        return p - hp.lr * u.astype(p.dtype)
