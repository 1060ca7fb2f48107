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
if ! command -v g++ >/dev/null 2>&1; then
  echo "warning: g++ not found: mx.compile on the CPU backend silently stops fusing without it" >&2
else
  # MLX's CPU JIT builds each fused kernel with g++; a precompiled preamble makes that ~4x faster (same code).
  .venv/bin/python -c "from mlx_optim import jit_pch; jit_pch.build()" >/dev/null 2>&1 \
    || echo "warning: could not precompile MLX's JIT preamble (mlx_optim.jit_pch); kernels build slower" >&2
fi
