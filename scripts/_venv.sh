# Sourced by scripts/demo and scripts/test: create ./.venv once and install the package with the given extras.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
EXTRAS="${1:-}"
STAMP=".venv/.installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$STAMP"
fi
# MLX's CPU backend on Linux runs on the reference BLAS/LAPACK bundled with mlx[cpu] (~10x slower matmul, eigh, qr):
# install OpenBLAS once (as root, with apt-get) and let mlx_optim load it (mlx_optim/blas.py; MLX_OPTIM_BLAS=off: not).
export MLX_OPTIM_BLAS="${MLX_OPTIM_BLAS:-auto}"
if [ "$(uname -s)" = Linux ] && [ "$MLX_OPTIM_BLAS" != off ] && [ "$MLX_OPTIM_BLAS" != 0 ] \
  && ! MLX_OPTIM_BLAS=off .venv/bin/python -c \
    'import runpy, sys; sys.exit(runpy.run_path("mlx_optim/blas.py")["find_library"]() is None)'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing OpenBLAS for MLX's CPU backend: apt-get install libopenblas0-pthread" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread; } >/dev/null 2>&1 \
      || echo "warning: could not install libopenblas0-pthread; MLX keeps its slow bundled BLAS" >&2
  else
    echo "hint: no OpenBLAS found; MLX's CPU backend keeps its slow bundled BLAS (see docs/guides/blas.md)" >&2
  fi
fi
if ! command -v g++ >/dev/null 2>&1; then
  echo "warning: g++ not found: mx.compile on the CPU backend silently stops fusing without it" >&2
else
  # MLX's CPU JIT builds each fused kernel with g++; a precompiled preamble makes that ~4x faster (same code).
  .venv/bin/python -c "from mlx_optim import jit_pch; jit_pch.build()" >/dev/null 2>&1 \
    || echo "warning: could not precompile MLX's JIT preamble (mlx_optim.jit_pch); kernels build slower" >&2
fi
