"""A precompiled header for MLX's CPU JIT: the same kernels, built several times faster.

On the CPU backend ``mx.compile`` writes each fused loop as C++ and builds it with
``g++ -std=c++17 -O3 -Wall -fPIC -shared``. Every such source starts with
``#include "mlx/backend/cpu/compiled_preamble.h"``, and parsing that header is most of each kernel's build.
GCC uses a precompiled ``compiled_preamble.h.gch`` found next to the header
when the flags match, so :func:`build` writes one there, with MLX's flags. The machine code of the kernels is the
same (``tests/test_jit_pch.py`` compares the disassembly with and without it); only the build is faster.

It writes into the installed ``mlx`` package (its ``include`` directory), so it is never done implicitly: run
``mlx-optim jit-pch`` once per environment (``scripts/_venv.sh`` does it for this repository's ``.venv``).
Remove the ``.gch`` file to undo it; a stale one (another MLX version's header) is ignored by GCC.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["FLAGS", "build", "header_path"]

FLAGS = (
    "-std=c++17",
    "-O3",
    "-Wall",
    "-fPIC",
)  # MLX 0.32's g++ flags (libmlx: "g++ -std=c++17 -O3 -Wall -fPIC -shared")
HEADER = Path("mlx/backend/cpu/compiled_preamble.h")


def include_dir() -> Path:
    """The ``include`` directory of the installed ``mlx`` package (the one MLX passes to g++ with ``-I``)."""
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mlx is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "include"


def header_path() -> Path:
    return include_dir() / HEADER


def build(out_dir: Path | None = None, force: bool = False) -> Path:
    """Build ``compiled_preamble.h.gch`` and return its path.

    ``out_dir`` (default: next to the header, where g++ finds it) receives ``mlx/backend/cpu/...``. The file is
    written to a temporary name and renamed, so a g++ running meanwhile never reads half of it. Raises
    ``RuntimeError`` without g++ or when the directory is not writable.
    """
    if shutil.which("g++") is None:
        raise RuntimeError("g++ not found: MLX's CPU JIT needs it, and so does its precompiled header")
    header = header_path()
    if not header.exists():
        raise RuntimeError(f"{header} not found: this MLX has no CPU JIT preamble")
    target = (include_dir() if out_dir is None else Path(out_dir)) / HEADER.with_suffix(".h.gch")
    if not force and target.exists() and target.stat().st_mtime >= header.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(target.parent, os.W_OK):
        raise RuntimeError(f"{target.parent} is not writable")
    fd, tmp = tempfile.mkstemp(suffix=".gch.tmp", dir=target.parent)
    os.close(fd)
    cmd = ["g++", *FLAGS, "-w", f"-I{include_dir()}", "-x", "c++-header", str(header), "-o", tmp]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"g++ failed ({done.returncode}): {done.stderr[-2000:]}")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other users of a shared installation
    os.replace(tmp, target)
    return target
