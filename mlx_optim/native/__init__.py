"""A native (C++) fast path for Adam / AdamW with ``state_dtype="int8"`` on MLX's CPU backend.

The pure-MLX int8 step (:mod:`mlx_optim.quantized`) needs two gathers per moment, and MLX's CPU gather costs
about twice the whole float32 AdamW step per element. ``adam8.cpp`` (next to this file) does one leaf's step as a
single MLX primitive (one task, opaque to ``mx.compile``): per block of entries it dequantizes both moments, runs
the Adam update in float32 and quantizes the new moments again with torchao's nearest rule (through the pure
path's threshold table). Its codes and scales equal the pure path's bit for bit and the parameter to within one
float32 ulp (measured: equal; ``tests/test_native.py``). It is used by :class:`mlx_optim.Adam` / ``AdamW`` on the
CPU with ``state_dtype="int8"`` and nearest rounding, without AMSGrad (:func:`adam_leaf`); everything else runs
the pure path.

``bf16gemm.cpp`` (built into the same library) adds :func:`bf16_gemm` / :func:`bf16_matmul`, a bfloat16 GEMM
(float32 accumulation, one rounding to bfloat16, as torch's CPU ``mm`` / ``addmm``) through MKL's
``cblas_gemm_bf16bf16f32`` (AMX or AVX512-BF16 where the processor has them). MKL is not linked: its runtime
library (``libmkl_rt`` of the pip package ``mkl``, in the ``native`` extra) is opened on first use.
:func:`bf16_newton_schulz` runs the whole bfloat16 Newton-Schulz loop of :mod:`mlx_optim.functional.matrix` with it
as one task (the normalization, then three GEMMs a step, the two symmetric ones in blocks on and above the
diagonal, the passes between them on MKL's OpenMP threads; on processors with AMX-BF16 the products run on AMX
tiles instead, ``amx.h``, see :func:`amx_available`); the Muon family and SCION use it on the CPU for
``ns_dtype="bfloat16"``, which is then also their default there on processors with AVX-512 (the reference's dtype,
and faster than the float32 iteration: ``benchmarks/matrix.py``; see :func:`bf16_fast`).
``tests/test_native_bf16.py`` checks each product within one bfloat16 ulp of the rounded float32 product, the loop
against the same GEMMs called one by one, and the result against pytorch_optimizer's iteration. :func:`gram`
computes float32 ``u @ u.T`` through the ``cblas_ssyrk`` of the OpenBLAS that :mod:`mlx_optim.blas` loaded for MLX
(``tests/test_native_gram.py``).

Its speed and memory against the float32-state step are measured by ``benchmarks/peak_memory.py`` (see the
precision guide).

The extension is built on first use, like the kernels of MLX's own ``mx.compile`` on the CPU: ``g++`` (or
``$CXX``) compiles ``adam8.cpp`` and nanobind's sources against the installed ``mlx`` (its headers and
``libmlx``) into a per-user cache (``$MLX_OPTIM_CACHE``, else ``$XDG_CACHE_HOME/mlx_optim``, else
``~/.cache/mlx_optim``), keyed by the mlx and nanobind versions, the Python ABI, the flags, the processor's
features and a hash of the source; later processes load the cached library (10-20 s of build once, then
milliseconds). Building at install time was not chosen: the package is pure Python (setuptools, no compiler at
install), and the library must match the mlx installed *later* as well; MLX itself needs ``g++`` on the CPU.

The extension shares MLX's nanobind type registry (domain ``mlx``), so it needs the nanobind version line mlx was
built with (mlx 0.32: nanobind 3). If the build or the load fails (no compiler, no ``nanobind``, another
nanobind ABI), :func:`available` warns once and the optimizers use the pure path; without MKL,
:func:`bf16_available` is False (silently) and the iterations use MLX's matmul. ``MLX_OPTIM_NATIVE=0`` disables
both fast paths.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlx.core as mx

from mlx_optim import blas, quantized
from mlx_optim.functional import matrix

__all__ = [
    "adam8",
    "adam_leaf",
    "available",
    "amx_available",
    "bf16_available",
    "bf16_fast",
    "bf16_gemm",
    "bf16_matmul",
    "bf16_newton_schulz",
    "bf16_report",
    "build",
    "cache_dir",
    "enabled",
    "gram",
    "gram_available",
    "gram_unavailable_reason",
    "load",
    "mkl_library",
]

SOURCE = Path(__file__).with_name("adam8.cpp")
SOURCES = (SOURCE, Path(__file__).with_name("bf16gemm.cpp"))
HEADERS = (Path(__file__).with_name("amx.h"),)  # included by bf16gemm.cpp: part of the cache key
MODULE = "_adam8"
# C++20 as MLX's headers need; hidden visibility as nanobind expects; -ffp-contract=off: no fused multiply-adds,
# so every float32 operation rounds as in MLX's element-wise kernels (its CPU JIT and libmlx are built without
# FMA on x86-64), which the bit-for-bit comparison with the pure path needs; -fno-math-errno: sqrt without the
# errno branch, so the update loop vectorizes (same results). ARCH_FLAGS (the build machine's vector units: AVX2 /
# AVX-512 instead of SSE2; faster loops) are dropped if the compiler rejects them.
CXXFLAGS = (
    "-std=c++20",
    "-O3",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fPIC",
    "-fvisibility=hidden",
    "-DNDEBUG",
    "-DNB_COMPACT_ASSERTIONS",
)
ARCH_FLAGS = ("-march=native",)

_FLOATS = (mx.float32, mx.bfloat16)
_lock = threading.Lock()
_module: Any = None
_failed: str | None = None


def enabled() -> bool:
    """False when ``MLX_OPTIM_NATIVE=0`` (read at each call, so tests can switch it)."""
    return os.environ.get("MLX_OPTIM_NATIVE", "1") != "0"


def cache_dir() -> Path:
    """Where built libraries are kept: ``$MLX_OPTIM_CACHE``, ``$XDG_CACHE_HOME/mlx_optim`` or ``~/.cache/mlx_optim``."""
    root = os.environ.get("MLX_OPTIM_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlx_optim"


def _mlx_dir() -> Path:
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mlx is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _nanobind_dir() -> Path:
    spec = importlib.util.find_spec("nanobind")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nanobind is not installed (pip install 'nanobind>=3,<4')")
    return Path(next(iter(spec.submodule_search_locations)))


def _machine() -> bytes:
    """What ``-march=native`` depends on: the processor's feature flags (Linux) or its name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.encode()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}".encode()


def _key() -> str:
    parts = [
        *(src.read_bytes() for src in (*SOURCES, *HEADERS)),
        metadata.version("mlx").encode(),
        metadata.version("nanobind").encode(),
        sys.implementation.cache_tag.encode(),
        " ".join((os.environ.get("CXX", "g++"), *CXXFLAGS, *ARCH_FLAGS)).encode(),
        _machine(),
    ]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def library_path() -> Path:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return cache_dir() / f"native-{metadata.version('mlx')}-{_key()}" / f"{MODULE}{suffix}"


def build(force: bool = False) -> Path:
    """Build the extension into :func:`cache_dir` (unless it is there) and return its path.

    Args:
        force: build again even if the library is cached.

    Raises:
        RuntimeError: with the compiler's output, when a step fails.
    """
    target = library_path()
    if target.exists() and not force:
        return target
    mlx_dir, nb_dir = _mlx_dir(), _nanobind_dir()
    include = [
        sysconfig.get_paths()["include"],
        str(nb_dir / "include"),
        str(nb_dir / "ext" / "robin_map" / "include"),
        str(mlx_dir / "include"),
    ]
    flags = [*CXXFLAGS, "-DNB_DOMAIN=mlx", *(f"-I{d}" for d in include)]
    cxx = os.environ.get("CXX", "g++")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        objects = []
        for name, src, extra in (
            ("nanobind", nb_dir / "src" / "nb_combined.cpp", ["-fno-strict-aliasing"]),
            *((src.stem, src, []) for src in SOURCES),
        ):
            obj = Path(tmp) / f"{name}.o"
            try:
                _run([cxx, *flags, *ARCH_FLAGS, *extra, "-c", str(src), "-o", str(obj)])
            except RuntimeError:  # a compiler without -march=native: the portable build
                _run([cxx, *flags, *extra, "-c", str(src), "-o", str(obj)])
            objects.append(str(obj))
        lib = Path(tmp) / target.name
        lib_dir = str(mlx_dir / "lib")
        python = ["-undefined", "dynamic_lookup"] if sys.platform == "darwin" else []  # resolved by the interpreter
        _run(
            [
                cxx,
                "-shared",
                *objects,
                *python,
                f"-L{lib_dir}",
                "-lmlx",
                f"-Wl,-rpath,{lib_dir}",
                *_dl(),
                "-o",
                str(lib),
            ]
        )
        os.replace(lib, target)  # atomic: a concurrent build of the same key writes the same file
    return target


def _dl() -> list[str]:
    """``-ldl`` where dlopen lives in libdl (glibc before 2.34); nothing elsewhere."""
    return ["-ldl"] if sys.platform.startswith("linux") else []


def _run(cmd: list[str]) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:  # no g++
        raise RuntimeError(f"{cmd[0]}: {e}") from e
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed:\n{done.stderr[-4000:]}")


def load() -> Any:
    """The extension module (built first if needed); raises ``RuntimeError`` if it cannot be had."""
    global _module
    with _lock:
        if _module is None:
            path = build()
            spec = importlib.util.spec_from_file_location(MODULE, path)
            if spec is None or spec.loader is None:
                raise RuntimeError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _probe(module)
            _module = module
        return _module


def _probe(module: Any) -> None:
    """One tiny call: fails (TypeError) when the extension does not share mlx's nanobind types."""
    zeros = mx.zeros((256,), mx.float32)
    scalars = mx.ones((8,))
    qmap = mx.linspace(-1.0, 1.0, 256)
    codes = mx.zeros((256,), mx.uint8)
    table = mx.zeros((1,), mx.int32)
    ones = mx.ones((1,))
    out = module.adam8(zeros, zeros, codes, ones, codes, ones, qmap, qmap, table, table, 0, scalars, 0, 256, 1.0)
    mx.eval(out)


def available() -> bool:
    """True when the fast path is enabled and the extension builds and loads (warns once when it does not)."""
    global _failed
    if not enabled() or _failed is not None:
        return False
    try:
        load()
    except Exception as e:  # noqa: BLE001 (any failure means: use the pure path)
        _failed = f"{type(e).__name__}: {e}"
        warnings.warn(
            "mlx_optim: the native int8 Adam step could not be built or loaded; using the slower pure-MLX path "
            f"(set MLX_OPTIM_NATIVE=0 to silence). Reason: {_failed}",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def adam8(p, g, codes_m, scale_m, codes_v, scale_v, scalars, *, wd_mode, block, scale_floor):
    """One leaf's Adam step with blockwise 8-bit moments (CPU).

    Args:
        p: the parameter (float32 or bfloat16).
        g: the gradient (float32 or bfloat16), ``p``'s shape.
        codes_m: the first moment's codes (uint8, the padded size); ``scale_m`` its block scales (float32).
        codes_v: the second moment's codes; ``scale_v`` its scales.
        scalars: ``[k1, c1, k2, c2, eps, wd, step_size, inv_bc2_sqrt]`` as one float32 array of 8 (see
            ``mlx_optim.kernels.ADAM``); with ``wd_mode=2`` the sixth is the decay factor ``1 - lr wd``.
        wd_mode: 0 no decay, 1 L2 penalty in the gradient, 2 decoupled decay.
        block: entries per scale.
        scale_floor: the smallest stored scale.

    Returns:
        ``(p, codes_m, scale_m, codes_v, scale_v)``, the new values (``p`` in its dtype).
    """
    signed, unsigned = quantized._map_array(True), quantized._map_array(False)
    table_m, table_v = quantized._bucket_table(8, True, True), quantized._bucket_table(8, False, True)
    key_low = quantized._KEY_LOW
    out = load().adam8(
        p,
        g,
        codes_m,
        scale_m,
        codes_v,
        scale_v,
        signed,
        unsigned,
        table_m,
        table_v,
        key_low,
        scalars,
        wd_mode,
        block,
        scale_floor,
    )
    return tuple(out)


def adam_leaf(opt: Any, gradient: mx.array, parameter: mx.array, g: mx.array, state: dict) -> mx.array | None:
    """``Adam.update_single`` of one leaf with int8 moments through :func:`adam8`, or ``None`` when the
    configuration is not covered (then the pure path runs): the CPU, ``state_dtype="int8"`` with nearest
    rounding, no AMSGrad, float32 or bfloat16 parameters computed in float32, both moments quantized.

    Args:
        opt: the :class:`mlx_optim.Adam` / ``AdamW`` (its ``hp`` holds the step's scalars).
        gradient: the leaf's gradient as given; ``g``: the gradient the update uses (float32, negated with
            ``maximize``).
        parameter: the leaf's parameter.
        state: the leaf's state (``exp_avg`` / ``exp_avg_sq`` quantized entries); updated in place.
    """
    fmt = opt.state_quantization
    if fmt is None or fmt.bits != 8 or fmt.stochastic or opt.amsgrad or not enabled():
        return None
    m, v = state.get("exp_avg"), state.get("exp_avg_sq")
    if not (quantized.is_quantized(m) and quantized.is_quantized(v)):
        return None
    if mx.default_device() != mx.cpu or parameter.dtype not in _FLOATS or g.dtype != mx.float32:
        return None
    blocks = -(-parameter.size // fmt.block_size)
    for entry in (m, v):
        if entry["codes"].shape != (blocks * fmt.block_size,) or entry["scale"].shape != (blocks,):
            return None  # not this format: the pure path raises its error
    if not available():
        return None
    hp = opt.hp
    if not opt.decays():
        mode, wd = 0, hp.weight_decay
    elif not opt.decoupled_weight_decay:
        mode, wd = 1, hp.weight_decay
    else:
        mode, wd = 2, getattr(hp, "decay_factor", None)
        if wd is None:
            wd = 1 - hp.weight_decay * hp.lr
    packed = hp.__dict__.setdefault("native_adam8_scalars", {})  # once per step (and decay mode), for every leaf
    if mode not in packed:
        values = [hp.k1, hp.one_minus_beta1, hp.k2, hp.one_minus_beta2, hp.eps, wd, hp.step_size, hp.inv_bc2_sqrt]
        packed[mode] = mx.stack([mx.array(x, mx.float32) if not isinstance(x, mx.array) else x for x in values])
    scalars = packed[mode].astype(mx.float32)
    grad = gradient if not opt.maximize and gradient.dtype in _FLOATS else g
    p, m_codes, m_scale, v_codes, v_scale = adam8(
        parameter,
        grad,
        m["codes"],
        m["scale"],
        v["codes"],
        v["scale"],
        scalars,
        wd_mode=mode,
        block=fmt.block_size,
        scale_floor=fmt.scale_floor,
    )
    state["exp_avg"] = {"codes": m_codes, "scale": m_scale}
    state["exp_avg_sq"] = {"codes": v_codes, "scale": v_scale}
    return p


# ---------------------------------------------------------------------------- bfloat16 GEMM through MKL
_mkl_failed: str | None = None
_mkl_loaded = False
_gram_state: str | None = None  # None: not tried; "": gram() runs; else why not


def mkl_library() -> Path | None:
    """MKL's runtime library (``libmkl_rt``) of the installed ``mkl`` distribution (pip), or None."""
    path = blas.mkl_library()
    return Path(path) if path else None


def bf16_available() -> bool:
    """True when :func:`bf16_matmul` can run: the native paths are enabled (``MLX_OPTIM_NATIVE`` is not ``0``), the
    extension loads and MKL's ``cblas_gemm_bf16bf16f32`` was found (pip package ``mkl``). Silent when not (the
    callers use MLX's own matmul); the reason is in ``bf16_unavailable_reason()``."""
    global _mkl_failed, _mkl_loaded
    if not enabled() or _mkl_failed is not None:
        return False
    if _mkl_loaded:
        return True
    lib = mkl_library()  # first: without MKL there is nothing to build for (and nothing to warn about)
    if lib is None:
        _mkl_failed = "the mkl package (libmkl_rt) is not installed"
        return False
    if not available():
        _mkl_failed = _failed or "the native extension is not available"
        return False
    reason = load().bf16gemm_init(str(lib))
    if reason:
        _mkl_failed = reason
        return False
    _mkl_loaded = True
    return True


def bf16_unavailable_reason() -> str | None:
    """Why :func:`bf16_available` is False (after it was called), else None."""
    return _mkl_failed


def bf16_gemm(
    a: mx.array, b: mx.array, c: mx.array | None = None, alpha: float = 1.0, beta: float = 0.0, f32_out: bool = False
) -> mx.array:
    """``alpha * (a @ b) + beta * c`` of bfloat16 matrices on the CPU through MKL (AMX where the processor has it),
    accumulated in float32 and rounded once to bfloat16 (or returned in float32), as torch's CPU ``addmm``.

    Call :func:`bf16_available` first (it loads MKL).

    Args:
        a: ``(m, k)`` bfloat16 (any strides; a transposed view is used as is).
        b: ``(k, n)`` bfloat16.
        c: ``(m, n)`` bfloat16 or float32, or None (then ``beta`` is ignored).
        alpha: the product's factor.
        beta: ``c``'s factor.
        f32_out: return the float32 accumulator instead of rounding it to bfloat16.
    """
    return load().bf16_gemm(a, b, c, float(alpha), float(beta), f32_out)


def bf16_matmul(a: mx.array, b: mx.array) -> mx.array:
    """``a @ b`` of 2-D bfloat16 matrices: float32 accumulation, one rounding to bfloat16 (:func:`bf16_gemm`).

    Args:
        a: ``(m, k)`` bfloat16.
        b: ``(k, n)`` bfloat16.
    """
    return bf16_gemm(a, b)


def amx_available() -> bool:
    """True when :func:`bf16_newton_schulz` runs its loop on AMX tiles (the default then): :func:`bf16_available`,
    the extension was built for a processor with AMX-BF16 (``-march=native``), Linux granted the process the tile
    state, and ``MLX_OPTIM_AMX`` is not ``0`` (read at each call). Else the loop runs on MKL's bfloat16 GEMM."""
    return os.environ.get("MLX_OPTIM_AMX", "1") != "0" and bf16_available() and bool(load().amx_available())


def bf16_newton_schulz(
    x: mx.array, weights: list[tuple[float, float, float]], eps: float | None = None, amx: bool | None = None
) -> mx.array:
    """The bfloat16 Newton-Schulz loop as one native task: for each ``(a, b, c)`` of ``weights``,
    ``A = X X^T``, ``B = b A + c A A``, ``X = a X + B X``, each a :func:`bf16_gemm` (float32 accumulation, one
    rounding to bfloat16), with the buffers allocated once. The scaling and the C term are added after the plain
    product, so an entry may differ from those three calls by one bfloat16 ulp where a float32 sum rounds the other
    way. The symmetric ``A`` and ``A A`` are computed on and above the diagonal and mirrored. Two engines:

    - AMX tiles (:func:`amx_available`, the default where it is true): each product in 32 x 32 blocks
      (``amx.h``), whose scaling, C term, rounding and mirror are applied while the block is in cache and written
      straight into the tile layouts the next products read (X's B-operand layouts made from its blocks);
      scratch ``6 M N + 2 M^2`` bytes for a wide ``x``
      (``M``, ``N``: the sides rounded up to 32).
    - MKL's ``cblas_gemm_bf16bf16f32``: the symmetric products in row blocks (up to 4, of at least 512 rows), the
      passes between the products over a float32 accumulator; scratch ``4 max(m^2, m n) + 4 m^2`` bytes.

    Both run on MKL's OpenMP threads; the calling thread keeps its scratch (up to 128 MiB) for the next call.

    With ``eps``, ``x`` is first normalized as :func:`mlx_optim.functional.matrix.newton_schulz` does:
    ``X = round(x / max(round(||x||_F), round(eps)))``, rounding to bfloat16.

    Call :func:`bf16_available` first (it loads MKL).

    Args:
        x: 2-D, any strides, in the wide orientation the iterations use: the normalized bfloat16 iterate, or with
            ``eps`` the matrix to normalize (float32, bfloat16 or float16).
        weights: one ``(a, b, c)`` per step.
        eps: lower bound of the normalizing norm; None: ``x`` is already normalized.
        amx: run on AMX tiles (True; raises ``ValueError`` where :func:`amx_available` is False) or on MKL's GEMM
            (False); None: AMX where available, except for thin matrices (under 128 rows and at least 2048
            columns, or the transpose: few blocks of ``X X^T`` over a long sum, where MKL's loop was faster, 0.49
            against 0.58 ms at 32 x 4096; one run).
    """
    use_amx = (amx_available() and not _thin(x.shape)) if amx is None else bool(amx)
    flat = [float(w) for abc in weights for w in abc]
    return load().bf16_newton_schulz(x, flat, None if eps is None else float(eps), use_amx)


def _thin(shape: tuple[int, ...]) -> bool:
    """Whether :func:`bf16_newton_schulz` keeps a matrix of this shape on MKL's GEMM by default (see there)."""
    return len(shape) == 2 and min(shape) < 128 and max(shape) >= 2048


def bf16_report(n: int = 1024, repeats: int = 3) -> dict[str, object]:
    """What ``mlx-optim doctor`` shows of the bfloat16 path: whether it runs (else why not), MKL's library and the
    median time of an ``n^3`` bfloat16 GEMM (float32 accumulation) on the CPU.

    Args:
        n: size of the timed ``n x n @ n x n`` product (GFLOP/s = 2 n^3 / time).
        repeats: timed runs after one warm-up (median reported).
    """
    import statistics
    import time

    out: dict[str, object] = {"bf16_native": False, "bf16_default": False, "bf16_reason": None, "mkl": None}
    if not bf16_available():
        out["bf16_reason"] = bf16_unavailable_reason() or "MLX_OPTIM_NATIVE=0"
        return out
    out.update(bf16_native=True, bf16_default=bf16_fast(), mkl=str(mkl_library()), bf16_gemm_n=n)
    out["bf16_amx"] = amx_available()  # the loop's engine: AMX tiles, else MKL's GEMM
    out["bf16_openmp"] = load().bf16_openmp() or None  # the runtime the loop's passes run on (None: serial)
    a = (mx.random.normal((n, n), key=mx.random.key(0)) / n).astype(mx.bfloat16)
    mx.eval(a)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        mx.eval(bf16_gemm(a, a, f32_out=True))
        if i:
            times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    out.update(bf16_gemm_ms=seconds * 1e3, bf16_gemm_gflops=2 * n**3 / seconds / 1e9)
    return out


def bf16_fast() -> bool:
    """True when :func:`bf16_newton_schulz` runs (:func:`bf16_available`) and beats a float32 iteration here: the
    processor has AVX-512 (MKL's bfloat16 GEMM uses AMX or AVX512-BF16 instructions where present, AVX-512 code
    otherwise). With AVX2 only, MKL's bfloat16 step was slower than the float32 iteration (the performance guide),
    so there the ``ns_dtype=None`` default stays float32."""
    return _has_avx512() and bf16_available()


@functools.cache
def _has_avx512() -> bool:
    return "avx512f" in _machine().decode(errors="replace").split()


def gram_available() -> bool:
    """True when :func:`gram` runs: the native paths are enabled, the extension loads, and the BLAS that
    :mod:`mlx_optim.blas` loaded for MLX is OpenBLAS (its SYRK took 4.3 / 30.8 ms for 1024 / 2048 against 6.9 /
    54.7 ms for the GEMM; MKL's SYRK took 8.3 ms at 1024, slower than its GEMM, so MKL is not used for it)."""
    global _gram_state
    if not enabled():
        return False
    if _gram_state is None:
        lib = blas.loaded_library()
        if lib is None or "openblas" not in Path(lib).name.lower():
            _gram_state = "MLX does not run on OpenBLAS"
        elif not available():
            _gram_state = _failed or "the native extension is not available"
        else:
            _gram_state = load().gram_init(lib)
    return _gram_state == ""


def gram_unavailable_reason() -> str | None:
    """Why :func:`gram_available` is False (after it was called; ``MLX_OPTIM_NATIVE=0`` when switched off), else
    None."""
    if not enabled():
        return "MLX_OPTIM_NATIVE=0"
    return _gram_state or None


def gram(u: mx.array) -> mx.array:
    """``u @ u.T`` of a 2-D float32 matrix through OpenBLAS's ``cblas_ssyrk``: the upper triangle (half the
    multiply-adds of the GEMM), mirrored, so the result is exactly symmetric. Call :func:`gram_available` first.

    Args:
        u: ``(m, k)`` float32, any strides (a transposed view is passed to SYRK as is).
    """
    return load().gram(u)


def _gram_native() -> Any:  # matrix.gram asks only for float32 on the CPU backend
    return gram if gram_available() else None


def _ns_native() -> Any:
    return bf16_newton_schulz if mx.default_device() == mx.cpu and bf16_available() else None


# Newton-Schulz in bfloat16 on the CPU runs natively; the default dtype is bfloat16 where that is fast
matrix.set_bf16_newton_schulz_provider(_ns_native, bf16_fast)
# u @ u.T of float32 statistics (SOAP's) through OpenBLAS's SYRK where MLX runs on OpenBLAS
matrix.set_gram_provider(_gram_native)
