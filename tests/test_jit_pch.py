"""mlx_optim.jit_pch: MLX's CPU JIT kernels built with the precompiled preamble are the same machine code."""

from __future__ import annotations

import re
import shutil
import subprocess

import mlx_optim.cli
from mlx_optim import jit_pch

# A kernel in the form MLX's CPU JIT writes (mlx/backend/cpu/compiled.cpp): the preamble, then one extern "C" loop.
KERNEL = """#include "mlx/backend/cpu/compiled_preamble.h"
using namespace mlx::core;
using namespace mlx::core::detail;
extern "C" {
void adam_like(int* shape, int64_t** strides, void** args) {
  float* A = (float*)args[0];
  float* B = (float*)args[1];
  float* C = (float*)args[2];
  const size_t size = (size_t)args[3];
  for (size_t i = 0; i < size; ++i) {
    float a = A[i];
    float b = B[i];
    float s = Sqrt()(Multiply()(b, b));
    C[i] = Subtract()(a, Divide()(Sign()(b), Add()(s, 1e-8f)));
  }
}
}
"""


def _build(src, out, includes):
    cmd = ["g++", *jit_pch.FLAGS, "-shared", "-H", *[f"-I{d}" for d in includes], str(src), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return done.stderr


def _code(so):
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(so)], capture_output=True, text=True).stdout
    return [line for line in text.splitlines() if re.match(r"\s+[0-9a-f]+:", line)]


def test_kernels_built_with_the_pch_are_the_same_code(tmp_path):
    assert shutil.which("g++") and shutil.which("objdump")
    pch = jit_pch.build(out_dir=tmp_path / "pch")
    assert pch.name == "compiled_preamble.h.gch" and pch.stat().st_size > 1e6
    mtime = pch.stat().st_mtime_ns
    assert jit_pch.build(out_dir=tmp_path / "pch") == pch and pch.stat().st_mtime_ns == mtime  # up to date: kept
    src = tmp_path / "kernel.cpp"
    src.write_text(KERNEL)
    inc = tmp_path / "include"  # MLX's headers without any .gch (the installed ones may have one)
    shutil.copytree(jit_pch.include_dir(), inc, ignore=shutil.ignore_patterns("*.gch"))
    with_pch = _build(src, tmp_path / "with.so", [tmp_path / "pch", inc])
    without = _build(src, tmp_path / "without.so", [inc])
    assert re.search(r"^! .*compiled_preamble\.h\.gch", with_pch, re.M), "g++ did not use the precompiled header"
    assert ".gch" not in without
    code = _code(tmp_path / "with.so")
    assert len(code) > 10 and code == _code(tmp_path / "without.so")


def test_cli_reports_missing_gxx(monkeypatch, capsys):
    monkeypatch.setattr(jit_pch.shutil, "which", lambda name: None)
    assert mlx_optim.cli.main(["jit-pch"]) == 2
    assert "g++ not found" in capsys.readouterr().err
