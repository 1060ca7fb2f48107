"""A fast BLAS/LAPACK for MLX's CPU backend on Linux.

The ``mlx[cpu]`` wheel for Linux links the reference (Netlib) BLAS and LAPACK that it bundles
(``mlx_cpu.libs/libblas-*.so.3``): matmul, ``eigh``, ``qr`` and ``inv`` are an order of magnitude slower there
than with OpenBLAS on the same cores (``mlx-optim doctor`` measures it). MLX calls these libraries through
their standard names (``cblas_sgemm``, ``ssyevd_``, ``sgeqrf_``, ...), so an optimized library that exports the
same names can stand in for them without any change to MLX.

**Mechanism.** :func:`enable` loads such a library (OpenBLAS by default) with ``RTLD_GLOBAL`` before ``mlx.core``
is imported. Python imports ``mlx.core`` with ``dlopen`` (``RTLD_LOCAL | RTLD_NOW``), and the dynamic linker looks
a dlopen'ed library's undefined symbols up in the *global* scope (the program, ``LD_PRELOAD`` and every
``RTLD_GLOBAL`` library) before the library's own dependencies; so ``libmlx.so``'s references to ``cblas_sgemm``
... bind to the optimized library, and the bundled ones are loaded but never called (``libmlx.so`` has no
``DT_SYMBOLIC``, no direct binding, and unversioned references to these names). With ``RTLD_NOW`` every reference
is bound when ``mlx.core`` is imported, so this must happen *before* it: afterwards :func:`enable` changes nothing
and says so. It needs no change to the environment, no re-exec and no compiler, and it does not leak into child
processes (``LD_PRELOAD`` does all three; it remains the way when ``mlx.core`` is imported first, see below).
:func:`resolved` checks the result where it counts: it reads the function pointers in ``libmlx.so``'s own GOT and
asks the dynamic linker which library each one points into.

**When it happens.** ``import mlx_optim`` runs :func:`enable` first thing, before any ``mlx`` import, when

* the process is the command line (``mlx-optim ...`` or ``python -m mlx_optim ...``), unless
  ``MLX_OPTIM_BLAS=off``; without an optimized library the command line prints one hint on stderr and goes on;
* or ``MLX_OPTIM_BLAS`` is set: ``auto`` (or ``1``/``on``) searches for OpenBLAS, a path loads that library
  (any library with the standard LP64 BLAS and LAPACK names, e.g. the ``mkl`` wheel's ``libmkl_rt.so.3``, best
  with ``MKL_THREADING_LAYER=SEQUENTIAL`` here), and
  ``off`` (or ``0``) keeps MLX's bundled libraries everywhere.

A library user opts in with ``MLX_OPTIM_BLAS=auto`` in the environment and ``import mlx_optim`` before
``import mlx.core``; when ``mlx.core`` came first, ``import mlx_optim`` warns (``RuntimeWarning``) instead. Whatever
the import order, the library can be preloaded: ``LD_PRELOAD="$(mlx-optim doctor --library)" python train.py``
(``mlx-optim doctor --library`` prints its path, or nothing when none is found).

The search (``auto``) looks for OpenBLAS where Debian/Ubuntu's ``libopenblas0-pthread`` (``apt-get install
libopenblas0-pthread``) and its ``openmp`` / ``serial`` variants install it, then for ``libopenblas.so.0`` /
``libopenblasp.so.0`` in the usual directories and the loader's cache, then for MKL's ``libmkl_rt`` of the pip
package ``mkl`` (in mlx-optim's ``native`` extra: a fast BLAS without root or apt; OpenBLAS comes first, its
``eigh`` was the faster here); a candidate is used only if it exports every name ``libmlx.so`` imports. Nothing is
loaded on other systems: MLX on macOS uses Accelerate. The loaded library is global to the process, so a library
imported later that references the same names without binding them itself (PyTorch's ``libtorch_cpu.so`` does, for
``sgemm_`` and its LAPACK calls) will use it too; imported before, it keeps its own. NumPy and SciPy use prefixed
names and are not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import struct
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "ENV",
    "Loaded",
    "candidates",
    "enable",
    "find_library",
    "libmlx_path",
    "mkl_library",
    "report",
    "resolved",
    "summary",
]

ENV = "MLX_OPTIM_BLAS"
OFF = ("0", "off", "no", "false", "bundled")
AUTO = ("1", "on", "yes", "true", "auto")
# The names libmlx.so (MLX 0.32) takes from BLAS/LAPACK; read from libmlx.so itself when it can be found.
KNOWN_SYMBOLS = (
    "cblas_sgemm cblas_dgemm cblas_cgemm sgeqrf_ dgeqrf_ sorgqr_ dorgqr_ ssyevd_ dsyevd_ cheevd_ sgesdd_ dgesdd_ "
    "cgesdd_ sgeev_ dgeev_ cgeev_ sgetrf_ dgetrf_ sgetri_ dgetri_ spotrf_ dpotrf_ strtri_ dtrtri_"
).split()
HINT = (
    "mlx-optim: MLX's CPU backend runs on the reference BLAS bundled with mlx[cpu] (a 1024^3 matmul ~0.5 s); "
    "install OpenBLAS for ~10x faster matmul/eigh/qr (Debian/Ubuntu: apt-get install libopenblas0-pthread; "
    "or pip install 'mlx-optim[native]', which brings MKL), "
    f"or set {ENV}=off to silence this. Details: mlx-optim doctor"
)


@dataclass(frozen=True)
class Loaded:
    """The outcome of :func:`enable`.

    Args:
        path: the library loaded with ``RTLD_GLOBAL`` (``None`` when none was).
        reason: why, in a few words (``"loaded"``, ``"disabled by MLX_OPTIM_BLAS=off"``, ``"not found"``,
            ``"mlx.core was imported first"``, ``"not Linux"``, ...).
    """

    path: str | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.path is not None


_LOADED: Loaded | None = None
_HINTED = False
_WARNED = False


# ----------------------------------------------------------------------------- finding and loading
def _multiarch() -> list[str]:
    machine = os.uname().machine
    names = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu"}
    return [f"/usr/lib/{names[machine]}"] if machine in names else []


def candidates() -> list[str]:
    """Paths of the OpenBLAS libraries present, best first (if none, sonames from the loader's cache), then MKL's
    runtime library of the pip ``mkl`` package when it is installed (the ``native`` extra)."""
    out: list[str] = []
    for d in _multiarch() + ["/usr/lib64", "/usr/lib"]:
        out += [f"{d}/openblas-pthread/libopenblas.so.0", f"{d}/openblas-openmp/libopenblas.so.0"]
        out += [f"{d}/openblas-serial/libopenblas.so.0", f"{d}/libopenblas.so.0", f"{d}/libopenblasp.so.0"]
    found = [p for p in dict.fromkeys(out) if os.path.exists(p)]
    if not found:
        found = [e for e in (ctypes.util.find_library(n) for n in ("openblas", "openblasp")) if e]  # runs ldconfig
    mkl = mkl_library()
    return found + ([mkl] if mkl else [])


def mkl_library() -> str | None:
    """MKL's runtime library (``libmkl_rt``) of the installed ``mkl`` distribution (pip), or None. Found from the
    package's file list, without importing anything."""
    try:
        dist = metadata.distribution("mkl")
    except metadata.PackageNotFoundError:
        return None
    names = sorted(
        (f for f in dist.files or () if Path(str(f)).name.startswith(("libmkl_rt.so", "libmkl_rt.dylib", "mkl_rt"))),
        key=lambda f: len(str(f)),
    )
    for f in names:
        path = Path(dist.locate_file(f)).resolve()
        if path.exists():
            return str(path)
    return None


def _symbols_needed() -> list[str]:
    path = libmlx_path()
    if path is not None:
        try:
            names = [n for n in _elf_undefined(path) if _is_blas_name(n)]
            if names:
                return names
        except (OSError, ValueError, struct.error):
            pass
    return list(KNOWN_SYMBOLS)


def _is_blas_name(name: str) -> bool:
    """``cblas_*`` or a Fortran BLAS/LAPACK name (``ssyevd_``: s/d/c/z, lowercase letters and digits, ``_``)."""
    if name.startswith("cblas_"):
        return True
    return len(name) >= 5 and name[0] in "sdcz" and name.endswith("_") and name[1:-1].isalnum() and name.islower()


def _load_checked(path: str, needed: list[str]) -> str | None:
    """Load ``path`` locally, check that it defines every name in ``needed``, then promote it to ``RTLD_GLOBAL``.
    Returns None (nothing made global) when it cannot be loaded or misses a name."""
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
    except OSError:
        return None
    if any(not hasattr(lib, name) for name in needed):
        return None
    ctypes.CDLL(path, mode=os.RTLD_GLOBAL | os.RTLD_NOW)  # dlopen of a loaded library with RTLD_GLOBAL promotes it
    return _dl_path(ctypes.cast(lib[needed[0]], ctypes.c_void_p).value) or path


def find_library(needed: list[str] | None = None) -> str | None:
    """The first of :func:`candidates` that loads and exports every BLAS/LAPACK name ``libmlx.so`` uses (or
    ``needed``), without making it global. None when there is none."""
    needed = _symbols_needed() if needed is None else needed
    for path in candidates():
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        except OSError:
            continue
        if all(hasattr(lib, name) for name in needed):
            return path
    return None


def enable(library: str | None = None) -> Loaded:
    """Load an optimized BLAS/LAPACK with ``RTLD_GLOBAL`` so that ``mlx.core``, imported afterwards, uses it.

    Idempotent. Never raises: the outcome is in the returned :class:`Loaded`, and everything keeps working on MLX's
    bundled libraries when nothing is loaded.

    Args:
        library: a path or soname to load; default: ``MLX_OPTIM_BLAS`` when it holds a path, else the first usable
            one of :func:`candidates`. ``MLX_OPTIM_BLAS=off`` wins over both.
    """
    global _LOADED
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in OFF:
        return Loaded(None, f"disabled by {ENV}={setting}")
    if _LOADED is not None and _LOADED.ok:
        return _LOADED
    if not sys.platform.startswith("linux"):
        return Loaded(None, "not Linux: MLX uses the system's BLAS there")
    if "mlx.core" in sys.modules:
        return Loaded(None, "mlx.core was imported first")
    if library is None and setting and setting.lower() not in AUTO:
        library = setting
    needed = _symbols_needed()
    if library is not None:
        path = _load_checked(library, needed)
        _LOADED = Loaded(path, "loaded" if path else f"{library} cannot be loaded or lacks a name libmlx.so uses")
        return _LOADED
    for path in candidates():
        loaded = _load_checked(path, needed)
        if loaded:
            _LOADED = Loaded(loaded, "loaded")
            return _LOADED
    _LOADED = Loaded(None, "no optimized BLAS/LAPACK found")
    return _LOADED


def loaded_library() -> str | None:
    """The path of the BLAS/LAPACK that :func:`enable` loaded for MLX, or None (MLX's bundled or the system's)."""
    return _LOADED.path if _LOADED is not None and _LOADED.ok else None


def _is_cli() -> bool:
    """Whether this process is the ``mlx-optim`` command (console script or ``python -m mlx_optim``)."""
    if os.path.basename(sys.argv[0] if sys.argv else "") == "mlx-optim":
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b in ("mlx_optim", "mlx_optim.cli") for a, b in zip(argv, argv[1:]))


def _on_package_import() -> None:
    """Run by ``import mlx_optim`` before it imports mlx: see the module's docstring for when it loads."""
    global _HINTED, _WARNED
    setting = os.environ.get(ENV, "").strip()
    cli = _is_cli()
    if not sys.platform.startswith("linux") or setting.lower() in OFF or not (setting or cli):
        return
    result = enable()
    if result.ok:
        return
    if result.reason == "mlx.core was imported first":
        if not _WARNED and not _bundled_fast():
            _WARNED = True
            lib = find_library()
            how = f'LD_PRELOAD="{lib}"' if lib else "an optimized BLAS (apt-get install libopenblas0-pthread)"
            warnings.warn(
                f"{ENV}={setting}: mlx.core was imported before mlx_optim, so MLX keeps its bundled reference "
                f"BLAS; import mlx_optim first, or start Python with {how}",
                RuntimeWarning,
                stacklevel=3,
            )
        return
    if cli and not setting and not _HINTED:
        _HINTED = True
        print(HINT, file=sys.stderr)
    elif setting and setting.lower() not in AUTO and not _WARNED:
        _WARNED = True
        warnings.warn(f"{ENV}={setting}: {result.reason}; MLX keeps its bundled BLAS", RuntimeWarning, stacklevel=3)


def _bundled_fast() -> bool:
    """True when MLX (already imported) resolves its matmul to something other than its bundled libraries."""
    lib = resolved().get("cblas_sgemm")
    return bool(lib) and "mlx_cpu.libs" not in lib and "libmlx" not in lib


# ----------------------------------------------------------------------------- what MLX resolves to
def libmlx_path() -> str | None:
    """Path of the installed ``libmlx.so`` (found without importing mlx), or None."""
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        p = Path(d) / "lib" / "libmlx.so"
        if p.exists():
            return str(p)
    return None


def _libdl() -> ctypes.CDLL:
    lib = ctypes.CDLL(None)
    if not hasattr(lib, "dladdr"):
        lib = ctypes.CDLL("libdl.so.2")
    return lib


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _dl_path(address: int | None) -> str | None:
    """The file of the loaded object that contains ``address`` (``dladdr``)."""
    if not address:
        return None
    info = _DlInfo()
    dl = _libdl()
    dl.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if not dl.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def _elf_sections(f) -> list[tuple]:
    ident = f.read(16)
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    f.seek(0x28)
    (shoff,) = struct.unpack("<Q", f.read(8))
    f.seek(0x3A)
    shentsize, shnum, _ = struct.unpack("<HHH", f.read(6))
    f.seek(shoff)
    raw = f.read(shentsize * shnum)
    # (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize)
    return [struct.unpack_from("<IIQQQQIIQQ", raw, i * shentsize) for i in range(shnum)]


def _elf_dynsym(path: str) -> tuple[list[tuple[str, int, int]], list[tuple[int, int, int]], int]:
    """(dynamic symbols as (name, shndx, value), RELA relocations against them as (offset, symbol, type),
    e_machine) of an ELF64 LE shared object."""
    with open(path, "rb") as f:
        sections = _elf_sections(f)
        f.seek(0x12)
        (machine,) = struct.unpack("<H", f.read(2))
        dynsym_i = next(i for i, s in enumerate(sections) if s[1] == 11)  # SHT_DYNSYM
        dynsym = sections[dynsym_i]
        strtab = sections[dynsym[6]]
        f.seek(strtab[4])
        strings = f.read(strtab[5])
        f.seek(dynsym[4])
        raw = f.read(dynsym[5])
        syms = []
        for i in range(len(raw) // 24):
            st_name, _info, _other, shndx, value, _size = struct.unpack_from("<IBBHQQ", raw, i * 24)
            syms.append((strings[st_name : strings.index(b"\0", st_name)].decode(), shndx, value))
        relocs = []
        for s in sections:
            if s[1] == 4 and s[6] == dynsym_i:  # SHT_RELA against .dynsym
                f.seek(s[4])
                rraw = f.read(s[5])
                for j in range(len(rraw) // 24):
                    offset, info, _addend = struct.unpack_from("<QQq", rraw, j * 24)
                    relocs.append((offset, info >> 32, info & 0xFFFFFFFF))
    return syms, relocs, machine


def _elf_undefined(path: str) -> list[str]:
    syms, _, _ = _elf_dynsym(path)
    return [name for name, shndx, _ in syms if name and shndx == 0]


# GOT slot relocations per e_machine: x86_64 (62): GLOB_DAT 6, JUMP_SLOT 7; aarch64 (183): GLOB_DAT 1025,
# JUMP_SLOT 1026.
_SLOT_TYPES = {62: (6, 7), 183: (1025, 1026)}


def resolved(symbols: list[str] | None = None, library: str | None = None) -> dict[str, str | None]:
    """Which library each BLAS/LAPACK function ``libmlx.so`` calls is bound to, in this process.

    Reads ``libmlx.so``'s GOT slot of each name (its load address from ``dlinfo``, the slot from its relocation
    table) and asks ``dladdr`` which loaded file the pointer falls in. Empty when ``libmlx.so`` is not loaded (import
    ``mlx.core`` first) or on a platform this does not know (not Linux, not ELF64 x86_64/aarch64). A value inside
    ``libmlx.so`` itself means a lazy binding not made yet; None means the pointer is in no loaded file.

    Args:
        symbols: the names to look up (default: every BLAS/LAPACK name the library imports).
        library: another loaded shared object to inspect instead of ``libmlx.so`` (a path).
    """
    path = library or libmlx_path()
    if path is None or not sys.platform.startswith("linux"):
        return {}
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return {}
    try:
        syms, relocs, machine = _elf_dynsym(path)
        dl = _libdl()
        linkmap = ctypes.c_void_p()
        dl.dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        if dl.dlinfo(ctypes.c_void_p(lib._handle), 2, ctypes.byref(linkmap)) != 0:  # RTLD_DI_LINKMAP
            return {}
        base = ctypes.c_size_t.from_address(linkmap.value).value  # link_map.l_addr
    except (OSError, ValueError, StopIteration, AttributeError, struct.error):
        return {}
    wanted = set(symbols or [n for n, shndx, _ in syms if shndx == 0 and _is_blas_name(n)])
    types = _SLOT_TYPES.get(machine, ())
    out: dict[str, str | None] = {}
    for offset, sym, rtype in relocs:
        name = syms[sym][0] if sym < len(syms) else ""
        if name in wanted and rtype in types and name not in out:
            out[name] = _dl_path(ctypes.c_void_p.from_address(base + offset).value)
    return dict(sorted(out.items()))


def summary() -> dict[str, object]:
    """``resolved()`` grouped: ``{"blas": [files of cblas_*], "lapack": [files of the LAPACK names], "fast": bool,
    "loaded": path or None, "symbols": resolved()}``; ``fast`` is True when every name resolves outside the
    bundled ``mlx_cpu.libs`` and ``libmlx.so``. Call after ``import mlx.core``."""
    res = resolved()
    blas = sorted({v or "?" for k, v in res.items() if k.startswith("cblas_")})
    lapack = sorted({v or "?" for k, v in res.items() if not k.startswith("cblas_")})
    fast = bool(res) and all(v and "mlx_cpu.libs" not in v and "libmlx" not in v for v in res.values())
    return {"blas": blas, "lapack": lapack, "fast": fast, "loaded": _LOADED.path if _LOADED else None, "symbols": res}


def report(n: int = 1024, n_eigh: int = 512, repeats: int = 3) -> dict[str, object]:
    """What ``mlx-optim doctor`` prints: versions, device, platform, the libraries MLX's CPU backend resolves its
    BLAS/LAPACK calls to, and measured speeds (imports ``mlx.core``).

    Args:
        n: size of the float32 ``n x n @ n x n`` matmul timed on the CPU stream (GFLOP/s = 2 n^3 / time).
        n_eigh: size of the symmetric float32 matrix whose ``mx.linalg.eigh`` is timed on the CPU stream.
        repeats: timed runs after one warm-up; the median is reported.
    """
    import platform
    import statistics
    import time

    import mlx.core as mx

    def median_time(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    key = mx.random.key(0)
    a, b = mx.random.normal((n, n), key=key), mx.random.normal((n, n), key=mx.random.split(key)[0])
    sym = mx.random.normal((n_eigh, n_eigh), key=key)
    sym = (sym + sym.T) / 2
    mx.eval(a, b, sym)
    t_mm = median_time(lambda: mx.eval(mx.matmul(a, b, stream=mx.cpu)))
    t_eigh = median_time(lambda: mx.eval(mx.linalg.eigh(sym, stream=mx.cpu)))
    info = summary()
    lib = find_library()
    try:
        from importlib.metadata import version

        mlx_version = version("mlx")
    except Exception:  # noqa: BLE001 - a source build of mlx has no metadata
        mlx_version = getattr(mx, "__version__", "?")
    return {
        "mlx": mlx_version,
        "device": str(mx.default_device()),
        "platform": f"{platform.platform()} ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()})",
        "blas": info["blas"],
        "lapack": info["lapack"],
        "fast_blas": info["fast"],
        "loaded_by_mlx_optim": info["loaded"],
        "reason": _LOADED.reason if _LOADED else "not requested",
        "setting": os.environ.get(ENV, ""),
        "available": lib,
        "matmul_n": n,
        "matmul_ms": t_mm * 1e3,
        "matmul_gflops": 2 * n**3 / t_mm / 1e9,
        "eigh_n": n_eigh,
        "eigh_ms": t_eigh * 1e3,
    }


_on_package_import()
