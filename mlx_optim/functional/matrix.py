"""Matrix functions: Newton-Schulz orthogonalization, matrix roots, eigenbases, identity helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import mlx.core as mx
import numpy as np

from mlx_optim import linalg
from mlx_optim.functional.elementwise import cautious_mask
from mlx_optim.functional.norms import norm

# The Newton-Schulz iteration in bfloat16 on the CPU backend, registered by mlx_optim.native (a higher layer) when
# it is imported: a callable returning ``iterate(x, weights)`` (one native task running the loop below through a
# bfloat16 GEMM: every product accumulated in float32 and rounded once to bfloat16) or None when it cannot run
# (disabled, not built, no MKL); and whether it is the faster choice here (the ns_dtype=None default).
_bf16_ns_provider: Callable[[], Callable[..., mx.array] | None] | None = None
_bf16_ns_fast: Callable[[], bool] | None = None


def set_bf16_newton_schulz_provider(
    provider: Callable[[], Callable[..., mx.array] | None] | None, fast: Callable[[], bool] | None = None
) -> None:
    """Register the native bfloat16 Newton-Schulz loop (see :mod:`mlx_optim.native`).

    Args:
        provider: called when an iteration starts; returns ``iterate(x, weights, eps)`` (``x`` the 2-D matrix in the
            wide orientation, which it normalizes as :func:`newton_schulz` does and iterates on in bfloat16,
            ``weights`` one ``(a, b, c)`` per step), or None to use MLX's matmul.
        fast: whether the native loop is faster than a float32 iteration on this machine (then ``ns_dtype=None``
            means bfloat16 on the CPU); None: never.
    """
    global _bf16_ns_provider, _bf16_ns_fast
    _bf16_ns_provider, _bf16_ns_fast = provider, fast


_gram_provider: Callable[[], Callable[[mx.array], mx.array] | None] | None = None


def set_gram_provider(provider: Callable[[], Callable[[mx.array], mx.array] | None] | None) -> None:
    """Register a native ``u @ u.T`` for float32 matrices on the CPU (see :mod:`mlx_optim.native`).

    Args:
        provider: called at each :func:`gram`; returns ``gram(u)`` or None to use MLX's matmul.
    """
    global _gram_provider
    _gram_provider = provider


def gram(u: mx.array) -> mx.array:
    """``u @ u.T`` of a 2-D matrix: through the registered native SYRK (half the multiply-adds, exactly symmetric)
    for float32 on the CPU backend when there is one, else MLX's matmul.

    Args:
        u: ``(m, k)`` matrix.
    """
    if _gram_provider is not None and u.dtype == mx.float32 and u.ndim == 2 and mx.default_device() == mx.cpu:
        native = _gram_provider()
        if native is not None:
            return native(u)
    return u @ u.T


def low_precision_newton_schulz(x: mx.array, dtype: mx.Dtype = mx.bfloat16) -> Callable[..., mx.array] | None:
    """The native loop for a ``dtype`` iteration on ``x`` (2-D floating point, bfloat16 iterate, CPU backend), or
    None (MLX's matmul)."""
    if _bf16_ns_provider is None or dtype != mx.bfloat16 or x.ndim != 2 or mx.default_device() != mx.cpu:
        return None
    if x.dtype not in (mx.float32, mx.bfloat16, mx.float16):
        return None
    return _bf16_ns_provider()


def fast_bf16_newton_schulz() -> bool:
    """Whether bfloat16 Newton-Schulz iterations on the CPU backend run natively here and faster than float32 ones."""
    return _bf16_ns_fast is not None and mx.default_device() == mx.cpu and _bf16_ns_fast()


def newton_schulz5(
    g: mx.array,
    steps: int = 5,
    eps: float = 1e-7,
    weights: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
    dtype: mx.Dtype = mx.bfloat16,
) -> mx.array:
    """Quintic Newton-Schulz iteration for the polar factor of a matrix.

    pytorch_optimizer's ``zero_power_via_newton_schulz_5``: the iterate is stored in
    ``dtype`` (bfloat16 like the reference) and each fused step (``mm``/``addmm``) is
    computed in float32 and rounded once, as torch's CPU kernels do; their summation order differs, so single
    products differ from torch's in the last bfloat16 place for a few entries, and over the iteration (not
    contractive entry by entry) by up to about 5e-3 (the parity rows' tolerances cover it).
    :func:`newton_schulz` with the one ``weights`` tuple at every step.
    """
    return newton_schulz(g, steps, [weights], eps, dtype)


NS_COEFFICIENTS: dict[str, list[tuple[float, float, float]]] = {
    "original": [(3.4445, -4.7750, 2.0315)],  # Keller Jordan's Muon
    "quintic": [  # modded-nanogpt's optimized quintic schedule
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ],
    "polar_express": [  # Polar Express, safety 1e-2
        (8.237312490495555, -23.157747414558198, 16.680568411445915),
        (4.082441999064835, -2.893047735332586, 0.5252849256975648),
        (3.9263479922546582, -2.8547468034765298, 0.5318022422894988),
        (3.2982187133085143, -2.424541981026706, 0.48632008358844075),
        (2.2970369434552573, -1.63662558125903, 0.4002628455953627),
        (1.8763805351440397, -1.2347896577722228, 0.35891887501668385),
        (1.8564423485617974, -1.2132449880935525, 0.3568003487825883),
        (1.8749994008682747, -1.2499988017229169, 0.3749994008546422),
    ],
    "polar_express_safer": [  # Polar Express, safety 2e-2
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.0429299351667245, -2.808917465908704, 0.5000178451051299),
        (3.8916678022926563, -2.7724841532176825, 0.5060648178503389),
        (3.285753657755658, -2.3681294933425394, 0.46449024233003117),
        (2.3005307116270983, -1.6111665557258408, 0.3833374427545273),
        (1.8631210546382593, -1.2042160621002727, 0.3421879560523383),
        (1.8382572152247512, -1.1779263289537742, 0.3396513038637379),
        (1.8749999923301852, -1.2499999836060613, 0.374999991275876),
    ],
}


Weights = str | tuple[float, float, float] | Sequence[tuple[float, float, float]]


def newton_schulz_weights(weights: Weights) -> list[tuple[float, float, float]]:
    """Resolve a preset name, one ``(a, b, c)`` tuple or a schedule of tuples (``get_newton_schulz_weights``)."""
    if isinstance(weights, str):
        key = weights.lower()
        if key not in NS_COEFFICIENTS:
            raise ValueError(f"ns_coeffs={weights!r} is not a preset; choose one of {tuple(NS_COEFFICIENTS)}")
        return list(NS_COEFFICIENTS[key])
    if isinstance(weights, tuple) and len(weights) == 3 and all(isinstance(w, (int, float)) for w in weights):
        return [tuple(float(w) for w in weights)]
    weights = list(weights)
    if not weights:
        raise ValueError("ns_coeffs: the coefficient schedule must not be empty")
    out = []
    for c in weights:
        if not isinstance(c, (tuple, list)) or len(c) != 3:
            raise ValueError("ns_coeffs must be a preset name, a coefficient tuple, or a list of coefficient tuples")
        out.append(tuple(float(w) for w in c))
    return out


def ns_coeff(weights: Sequence[tuple[float, float, float]], i: int) -> tuple[float, float, float]:
    return weights[min(i, len(weights) - 1)]


def newton_schulz(
    g: mx.array,
    steps: int = 5,
    weights: Sequence[tuple[float, float, float]] = NS_COEFFICIENTS["original"],
    eps: float = 1e-7,
    dtype: mx.Dtype = mx.bfloat16,
) -> mx.array:
    r"""pytorch_optimizer's ``zero_power_via_newton_schulz_5`` for a 2-D ``g`` with a coefficient schedule.

    :math:`X_0 = G / \max(\|G\|_F, \epsilon)` (on the wide orientation), then
    :math:`A = X X^\top,\ B = b A + c A^2,\ X \leftarrow a X + B X` with the ``i``-th
    ``(a, b, c)`` (the last one repeats). The iterate is stored in ``dtype`` and every
    fused product is computed in float32 and rounded once, as torch's CPU kernels do.
    Generalizes :func:`newton_schulz5` (one fixed tuple).
    Returns ``dtype``.
    """
    transpose = g.shape[-2] > g.shape[-1]
    x = g.T if transpose else g
    iterate = low_precision_newton_schulz(x, dtype)
    if iterate is not None:  # the same fused products in one native task, with the normalization when eps is known
        coeffs = [ns_coeff(weights, i) for i in range(steps)]
        x = iterate(x, coeffs, eps) if isinstance(eps, (int, float)) else iterate(ns_start(x, eps, dtype), coeffs)
        return x.T if transpose else x
    x = ns_start(x, eps, dtype)
    for i in range(steps):
        x = rounded_ns_step(x, ns_coeff(weights, i), dtype).astype(dtype)
    return x.T if transpose else x


def ns_start(x: mx.array, eps: float | mx.array, dtype: mx.Dtype) -> mx.array:
    """:func:`newton_schulz`'s starting iterate: ``x`` rounded to ``dtype`` and divided by its Frobenius norm
    (computed in float32, rounded to ``dtype``, at least ``eps`` rounded to ``dtype``), the quotient rounded.

    Args:
        x: 2-D matrix (any float dtype).
        eps: lower bound of the norm (a float or a traced scalar).
        dtype: the iteration dtype.
    """
    f32 = mx.float32
    x = x.astype(dtype)
    norm = mx.sqrt(mx.sum(mx.square(x.astype(f32)))).astype(dtype)
    return (x.astype(f32) / mx.maximum(norm, mx.array(eps).astype(dtype)).astype(f32)).astype(dtype)


def rounded_ns_step(x: mx.array, weights: Sequence[float], dtype: mx.Dtype) -> mx.array:
    """One Newton-Schulz step ``A = X X^T, B = b A + c A A, X <- a X + B X`` with every fused product computed in
    float32 and rounded once to ``dtype``, as torch's low-precision CPU kernels and the native loop do.

    Args:
        x: the iterate (values of ``dtype``, any float dtype), 2-D.
        weights: ``(a, b, c)``.
        dtype: the iteration dtype (float32: no rounding).

    Returns:
        The next iterate in float32, holding ``dtype`` values.
    """
    f32 = mx.float32

    def rnd(t: mx.array) -> mx.array:
        return t if dtype == f32 else t.astype(dtype).astype(f32)

    w0, w1, w2 = weights
    xf = x.astype(f32)
    a = rnd(xf @ xf.T)
    b = rnd(w1 * a + w2 * (a @ a))
    return rnd(w0 * xf + b @ xf)


def gram_newton_schulz(
    g: mx.array,
    steps: int = 5,
    weights: Sequence[tuple[float, float, float]] = NS_COEFFICIENTS["original"],
    eps: float = 1e-7,
    dtype: mx.Dtype = mx.float16,
    reset_steps: Sequence[int] = (2,),
) -> mx.array:
    r"""pytorch_optimizer's ``zero_power_via_gram_newton_schulz`` (restarted Gram Newton–Schulz) for a 2-D ``g``.

    Iterates on the small Gram matrix :math:`R = X X^\top` and accumulates the
    polynomial factor :math:`Q` so that the result is :math:`Q X_0`; at the iteration
    counts in ``reset_steps`` it forms :math:`X \leftarrow Q X` and restarts. Normalizes
    in float32, iterates in ``dtype`` (float16 like the reference; a scalar added to a
    float16 diagonal is rounded to float16 first, as in torch).
    """
    f32 = mx.float32

    def rnd(t: mx.array) -> mx.array:
        return t.astype(dtype).astype(f32)

    transpose = g.shape[-2] > g.shape[-1]
    m = (g.T if transpose else g).astype(f32)
    x = rnd(m / mx.maximum(mx.sqrt(mx.sum(mx.square(m))), eps))
    if steps <= 0:
        x = x.astype(dtype)
        return x.T if transpose else x
    gram = rnd(x @ x.T)
    eye = mx.eye(gram.shape[0], dtype=f32)
    factor = None
    for i in range(steps):
        if i in reset_steps and factor is not None:
            x = rnd(factor @ x)
            gram = rnd(x @ x.T)
            factor = None
        w0, w1, w2 = ns_coeff(weights, i)
        poly = rnd(w1 * gram + w2 * (gram @ gram))
        if factor is not None:
            factor = rnd(w0 * factor + factor @ poly)
        if i + 1 < steps and i + 1 not in reset_steps:
            s = rnd(w0 * gram + gram @ poly)
            gram = rnd(w0 * s + poly @ s)
        if factor is None:
            factor = rnd(poly + round_scalar(w0, dtype) * eye)
    x = (factor @ x).astype(dtype)
    return x.T if transpose else x


NSDtype = mx.Dtype | str | None

_NS_DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}


def check_ns_dtype(ns_dtype: NSDtype) -> NSDtype:
    """Validate an ``ns_dtype`` keyword: None, ``mx.bfloat16`` / ``mx.float16`` / ``mx.float32`` or their names."""
    if ns_dtype is None:
        return None
    if isinstance(ns_dtype, str):
        if ns_dtype not in _NS_DTYPES:
            raise ValueError(f"ns_dtype={ns_dtype!r} must be None or one of {tuple(_NS_DTYPES)}")
        return _NS_DTYPES[ns_dtype]
    if ns_dtype not in _NS_DTYPES.values():
        raise ValueError(f"ns_dtype={ns_dtype!r} must be None, mx.bfloat16, mx.float16 or mx.float32")
    return ns_dtype


def ns_iteration_dtype(ns_dtype: NSDtype, reference: mx.Dtype, native: bool = True) -> mx.Dtype:
    """The dtype a matrix iteration runs in: ``ns_dtype``, or for None the reference's ``reference`` dtype on a GPU;
    on the CPU backend bfloat16 when the reference's is bfloat16, the iteration is :func:`newton_schulz` /
    :func:`newton_schulz5` (``native``) and it runs natively and fast here (:func:`fast_bf16_newton_schulz`: MKL's
    bfloat16 GEMM on a processor with AVX-512), else float32 (MLX's own CPU matmul has no fast
    bfloat16/float16 path; the low-precision iteration is emulated with float32 products rounded after each step,
    which only adds work there).

    Resolved when the update is traced, from ``mx.default_device()``.

    Args:
        ns_dtype: the optimizer's ``ns_dtype`` keyword (None: the default described above).
        reference: the reference implementation's iteration dtype.
        native: whether the iteration is one of the Newton-Schulz loops that run natively in bfloat16.
    """
    if ns_dtype is not None:
        return check_ns_dtype(ns_dtype)
    if mx.default_device().type != mx.cpu:
        return reference
    return mx.bfloat16 if native and reference == mx.bfloat16 and fast_bf16_newton_schulz() else mx.float32


def round_scalar(x: float, dtype: mx.Dtype) -> float:
    """``x`` rounded to nearest-even in ``dtype`` (torch rounds a Python scalar so when adding it to such a tensor)."""
    if dtype == mx.float16:
        return float(np.float16(x))
    if dtype == mx.bfloat16:
        bits = int(np.array(x, np.float32).view(np.uint32))
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return float(np.array(bits, np.uint32).view(np.float32))
    return float(np.float32(x)) if dtype == mx.float32 else float(x)


def as_matrix(x: mx.array) -> mx.array:
    """The references' matrix view ``x.reshape(x.size(0), -1)`` (output features first): ``(n, 1)`` for a vector,
    ``(1, 1)`` for a scalar."""
    return x.reshape(x.shape[0] if x.ndim else 1, -1)


def cautious_lowp(update: mx.array, g: mx.array) -> mx.array:
    """The reference's in-place cautious mask on a low-precision update (masked in float32, rounded back)."""
    return cautious_mask(update.astype(mx.float32), g).astype(update.dtype)


def inverse_root_svd(mat: mx.array, power: float) -> mx.array:
    """``mat ** (-1/power)`` of a PSD matrix via SVD (pytorch_optimizer's ``compute_power_svd``).

    The SVD runs on the CPU stream (the only one MLX implements it on).
    """
    u, s, vt = linalg.svd(mat.astype(mx.float32))
    return ((u * mx.power(s, -1.0 / power)[..., None, :]) @ vt).astype(mat.dtype)


def largest_eigenvalue(mat: mx.array, num_iters: int = 100) -> mx.array:
    """Largest eigenvalue of a PSD matrix by ``num_iters`` steps of power iteration from a fixed start vector
    (at least ``1e-16``).

    pytorch_optimizer's ``power_iteration`` (Scalable Shampoo) starts from ``torch.randn``; the estimate there
    only scales a relative ridge, so the start vector does not matter beyond float rounding.
    """
    n = mat.shape[0]
    v = mx.full((n,), 1.0 / math.sqrt(n), mat.dtype) + mx.arange(n, dtype=mat.dtype) * 1e-3
    tiny = float(np.finfo(np.float32).tiny)
    for _ in range(num_iters):
        mv = mat @ v
        v = mv / mx.maximum(norm(mv), tiny)
    return mx.maximum(mx.sum(v * (mat @ v)), 1e-16)


def eigenvectors(mat: mx.array) -> mx.array:
    """Eigenvectors of a symmetric matrix, ascending eigenvalues (``torch.linalg.eigh``), on the CPU stream."""
    return linalg.eigh(mat)[1]


def merge_small_dims(shape: Sequence[int], max_dim: int) -> list[int]:
    """pytorch_optimizer's ``merge_small_dims``: merge adjacent dims while the product stays <= ``max_dim``.

    Like the reference it returns ``[1]`` when everything merges into one dimension.
    """
    merged: list[int] = []
    product = 1
    for d in shape:
        product *= d
        if product > max_dim:
            merged.append(product // d)
            product = d
    merged.append(product)
    return merged if len(merged) > 1 else [1]


def identity(n: int, dtype: mx.Dtype) -> mx.array:
    return mx.eye(n, dtype=dtype)
