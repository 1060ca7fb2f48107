"""mlx_optim.blas: an optimized BLAS/LAPACK for MLX's CPU backend on Linux, and ``mlx-optim doctor``.

Each case runs in a subprocess: what MLX binds to is decided once, when ``mlx.core`` is imported."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_optim import blas

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")
LIB = blas.find_library() if LINUX else None
needs_lib = pytest.mark.skipif(LIB is None, reason="no OpenBLAS here (apt-get install libopenblas0-pthread)")
pytestmark = [pytest.mark.skipif(not LINUX, reason="MLX links the reference BLAS on Linux only")]

# MLX's float32 linear algebra against NumPy's float64: matmul, eigh, qr, svd, inv, cholesky; then the libraries MLX
# resolves its BLAS/LAPACK names to.
CHECK = r"""
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    if "--mlx-first" in sys.argv:
        import mlx.core
    import mlx_optim
import mlx.core as mx
import numpy as np
from mlx_optim import blas

rng = np.random.default_rng(0)
a = rng.standard_normal((96, 80))
b = rng.standard_normal((80, 64))
s = a.T @ a + 80 * np.eye(80)
f = lambda x: mx.array(x.astype(np.float32))
cpu = mx.cpu
err = {}
err["matmul"] = float(np.abs(np.array(f(a) @ f(b)) - a @ b).max() / np.abs(a @ b).max())
w, v = mx.linalg.eigh(f(s), stream=cpu)
err["eigh"] = float(np.abs(np.array(w) - np.linalg.eigvalsh(s)).max() / np.linalg.eigvalsh(s).max())
q, r = mx.linalg.qr(f(a), stream=cpu)
err["qr"] = float(np.abs(np.array(q) @ np.array(r) - a).max() / np.abs(a).max())
sv = mx.linalg.svd(f(a), compute_uv=False, stream=cpu)
err["svd"] = float(np.abs(np.array(sv) - np.linalg.svd(a, compute_uv=False)).max() / np.linalg.norm(a, 2))
err["inv"] = float(np.abs(np.array(mx.linalg.inv(f(s), stream=cpu)) @ s - np.eye(80)).max())
err["cholesky"] = float(np.abs(np.array(mx.linalg.cholesky(f(s), stream=cpu)) - np.linalg.cholesky(s)).max() / 10)
print(json.dumps({"err": err, "symbols": blas.resolved(), "fast": blas.summary()["fast"],
                  "warnings": [str(w.message) for w in caught]}))
"""


def run_check(setting: str | None, *args: str, preload: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (blas.ENV, "LD_PRELOAD")}
    if setting is not None:
        env[blas.ENV] = setting
    if preload:
        env["LD_PRELOAD"] = preload
    res = subprocess.run(
        [sys.executable, "-c", CHECK, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name, e in out["err"].items():
        assert e < 1e-4, (name, e, setting)
    return out


def bundled(path: str | None) -> bool:
    return path is not None and "mlx_cpu.libs" in path


@needs_lib
def test_loaded_before_mlx_every_blas_lapack_name_resolves_to_it():
    out = run_check("auto")
    target = os.path.realpath(LIB)
    assert out["symbols"] and set(out["symbols"].values()) == {target}, out["symbols"]
    assert out["fast"] and not out["warnings"]


def test_off_keeps_the_bundled_libraries():
    out = run_check("off")
    assert out["symbols"] and all(bundled(p) for p in out["symbols"].values()), out["symbols"]
    assert not out["fast"] and not out["warnings"]


def test_a_library_that_cannot_be_loaded_warns_and_falls_back():
    out = run_check("/nonexistent/libopenblas.so.0")
    assert all(bundled(p) for p in out["symbols"].values())
    assert len(out["warnings"]) == 1 and "/nonexistent/libopenblas.so.0" in out["warnings"][0]


@needs_lib
def test_too_late_after_mlx_core_warns_and_ld_preload_still_works():
    out = run_check("auto", "--mlx-first")
    assert all(bundled(p) for p in out["symbols"].values())
    assert len(out["warnings"]) == 1 and "LD_PRELOAD" in out["warnings"][0], out["warnings"]
    out = run_check("auto", "--mlx-first", preload=LIB)
    assert set(out["symbols"].values()) == {os.path.realpath(LIB)} and not out["warnings"]


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
def test_resolved_covers_every_blas_lapack_name_libmlx_imports():
    """The ELF reader finds the same undefined BLAS/LAPACK names as ``nm -D`` and a GOT slot for each."""
    import mlx.core as mx

    mx.eval(mx.ones((8, 8)) @ mx.ones((8, 8)))
    nm = subprocess.run(["nm", "-D", "--undefined-only", blas.libmlx_path()], capture_output=True, text=True)
    names = {line.split()[-1] for line in nm.stdout.splitlines()}
    expected = {n for n in names if n.startswith("cblas_") or (n.endswith("_") and n[0] in "sdcz" and n.islower())}
    assert expected >= {"cblas_sgemm", "ssyevd_", "sgeqrf_"}
    res = blas.resolved()
    assert set(res) == expected
    assert all(p and "libmlx" not in p for p in res.values()), res  # bound (RTLD_NOW), not left lazy


def test_cli_hint_is_printed_once_and_only_for_the_cli(monkeypatch, capsys):
    monkeypatch.delenv(blas.ENV, raising=False)
    monkeypatch.setattr(blas, "_HINTED", False)
    monkeypatch.setattr(blas, "enable", lambda library=None: blas.Loaded(None, "no optimized BLAS/LAPACK found"))
    monkeypatch.setattr(blas, "_is_cli", lambda: False)
    blas._on_package_import()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(blas, "_is_cli", lambda: True)
    blas._on_package_import()
    blas._on_package_import()
    err = capsys.readouterr().err
    assert err.count("mlx-optim:") == 1 and "libopenblas0-pthread" in err


def test_is_cli_recognises_the_entry_points(monkeypatch):
    for argv, orig, want in [
        (["/x/bin/mlx-optim", "list"], ["python", "/x/bin/mlx-optim", "list"], True),
        (["-m", "list"], ["python", "-m", "mlx_optim", "list"], True),
        (["train.py"], ["python", "train.py"], False),
        (["-m"], ["python", "-m", "mlx_optim.blas"], False),
    ]:
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.setattr(sys, "orig_argv", orig, raising=False)
        assert blas._is_cli() is want, argv


def doctor(*args: str, setting: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != blas.ENV}
    if setting is not None:
        env[blas.ENV] = setting
    return subprocess.run(
        [sys.executable, "-m", "mlx_optim", "doctor", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_doctor_reports_the_libraries_and_the_speed():
    res = doctor()
    assert res.returncode == 0, res.stderr
    fields = dict(line.split(":", 1) for line in res.stdout.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    for key in ("mlx-optim", "mlx", "device", "platform", "BLAS", "LAPACK", "fast BLAS", blas.ENV):
        assert key in fields, res.stdout
    assert "GFLOP/s" in fields["matmul 1024^3 f32 (cpu)"] and fields["eigh 512 f32 (cpu)"].endswith("ms")
    # the native extra (MKL) is installed by CI: the bfloat16 Newton-Schulz path and its GEMM's speed
    assert fields["bf16 Newton-Schulz"].startswith("native") and "GFLOP/s" in fields["gemm 1024^3 bf16 (cpu)"]
    # the pip mkl package brings Intel's OpenMP runtime: the loop's passes run on MKL's threads
    assert "passes on libiomp5.so" in fields["bf16 Newton-Schulz"], res.stdout
    # the loop's engine: AMX tiles where the processor has them (and Linux grants them), else MKL's GEMM
    from mlx_optim import native

    engine = "AMX tiles" if native.amx_available() else "MKL GEMM"
    assert fields["bf16 Newton-Schulz"].startswith(f"native, {engine} ("), res.stdout
    avx512 = any(line.startswith("flags") and "avx512f" in line.split() for line in open("/proc/cpuinfo"))
    assert ("ns_dtype=None is bfloat16" in fields["bf16 Newton-Schulz"]) == avx512, res.stdout
    if LIB is not None:  # the command line loads it by default
        assert fields["fast BLAS"] == "yes" and fields["BLAS"] == os.path.realpath(LIB), res.stdout
        assert fields["Gram statistics u u^T"] == "OpenBLAS SYRK", res.stdout
    else:
        assert fields["fast BLAS"].startswith("no") and "mlx_cpu.libs" in fields["BLAS"]
        assert fields["Gram statistics u u^T"].startswith("MLX matmul"), res.stdout


def test_doctor_off_json_and_library():
    res = doctor("--json", setting="off")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert not r["fast_blas"] and all("mlx_cpu.libs" in p for p in r["blas"] + r["lapack"])
    assert r["matmul_gflops"] > 0 and r["eigh_ms"] > 0 and r["setting"] == "off"
    assert r["bf16_native"] and r["bf16_gemm_gflops"] > 0
    assert res.stderr == ""  # no hint when the user turned it off
    res = doctor("--library")
    assert res.returncode == 0 and res.stdout.strip() == (LIB or "")


MKL_FALLBACK = r"""
import ctypes.util, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("blas_alone", sys.argv[1])  # mlx_optim.blas without the package
b = sys.modules["blas_alone"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(b)
b._multiarch = lambda: []  # a machine without OpenBLAS
ctypes.util.find_library = lambda name: None
assert "mlx.core" not in sys.modules
loaded = b.enable()
import mlx.core as mx
import numpy as np
a = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
s = a.T @ a + 48 * np.eye(48, dtype=np.float32)
w = mx.linalg.eigh(mx.array(s), stream=mx.cpu)[0]
print(json.dumps({"path": loaded.path, "sgemm": b.resolved().get("cblas_sgemm"), "syevd": b.resolved().get("ssyevd_"),
                  "matmul": float(np.abs(np.array(mx.array(a).T @ mx.array(a)) - a.T @ a).max()),
                  "eigh": float(np.abs(np.array(w) - np.linalg.eigvalsh(s.astype(np.float64))).max())}))
"""


def test_without_openblas_auto_falls_back_to_the_mkl_wheel():
    """The ``native`` extra's ``mkl`` wheel (installed by CI) is the last candidate: a fast BLAS without apt."""
    mkl = blas.mkl_library()
    assert mkl is not None, "CI installs the native extra (mkl)"
    assert blas.candidates()[-1] == mkl
    env = {k: v for k, v in os.environ.items() if k not in (blas.ENV, "LD_PRELOAD")}
    res = subprocess.run(
        [sys.executable, "-c", MKL_FALLBACK, str(ROOT / "mlx_optim" / "blas.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert "libmkl_rt" in r["path"] and "libmkl_rt" in r["sgemm"] and "libmkl_rt" in r["syevd"], r
    assert r["matmul"] < 1e-3 and r["eigh"] < 1e-3, r
