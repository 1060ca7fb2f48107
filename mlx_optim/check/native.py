"""``mlx-optim check``'s native section: the C++ CPU paths of :mod:`mlx_optim.native` on this machine.

They are built on first use with ``-march=native`` for the processor they run on (AMX tiles, AVX-512 or AVX2
loops, the BLAS found here), so the test suite's machine vouches only for its own build. Each check runs one path
on random inputs against the pure-MLX computation it replaces, with the bound its test uses:

- ``newton_schulz mkl`` / ``newton_schulz amx`` at a few shapes (sides not multiples of 32 included): one
  bfloat16 step of the native loop, from the same normalized start, against MLX's loop (float32 products rounded
  to bfloat16 once each). Error over tolerance: the largest difference over two bfloat16 ulps of the largest entry
  (products summed in another order round a few entries the other way; a misplaced block is off by whole entries),
  or the share of unequal entries over 1 %, whichever is worse.
- ``adam8``: three int8 Adam steps, native against the pure path: codes and scales equal, parameters within one
  float32 ulp (``tests/test_native.py``).
- ``gram``: ``u u^T`` through the BLAS's SYRK against MLX's matmul: within ``1e-5`` of the largest entry, exactly
  symmetric.

A path that is not built or not used here (no compiler, no MKL, no AMX, MLX not on OpenBLAS) is skipped with the
reason. The section runs on the CPU device (``--device cpu``, the default without a GPU).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

import mlx_optim
from mlx_optim import native
from mlx_optim.functional import matrix

__all__ = ["CHECKS", "NS_SHAPES", "run"]

NS_SHAPES = ((33, 65), (300, 700), (1024, 1100))
"""Newton-Schulz shapes, wide as the iterations orient them: padded blocks, several blocks, several row groups."""

Outcome = tuple[str, float | None, str]


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _verdict(ratio: float, detail: str) -> Outcome:
    return ("pass" if ratio <= 1.0 else "FAIL"), ratio, detail


def newton_schulz(amx: bool, shape: tuple[int, int]) -> Outcome:
    """One native bfloat16 Newton-Schulz step on the MKL (``amx=False``) or AMX engine against MLX's."""
    if not native.bf16_available():
        return "skip", None, f"not built here: {native.bf16_unavailable_reason()}"
    if amx and not native.amx_available():
        return "skip", None, "no AMX here (processor, kernel or MLX_OPTIM_AMX=0): the MKL engine runs"
    g = mx.random.normal(shape, key=mx.random.key(shape[0] * 7919 + shape[1]))
    x = matrix.ns_start(g, 1e-7, mx.bfloat16)
    w = matrix.NS_COEFFICIENTS["quintic"][0]
    got = np.array(native.bf16_newton_schulz(x, [w], amx=amx).astype(mx.float32))
    want = np.array(matrix.rounded_ns_step(x, w, mx.bfloat16))  # MLX's loop: float32 products, each rounded once
    biggest = float(np.abs(want).max())
    tol = 2.0 * 2.0 ** (np.floor(np.log2(biggest)) - 7)  # two bfloat16 ulps at the largest entry
    diff = float(np.abs(got - want).max())
    unequal = float(np.mean(got != want))
    ratio = max(diff / tol, unequal / 0.01)
    return _verdict(ratio, f"max |diff| {diff:.3g} (tol {tol:.3g}), {unequal:.2%} of entries differ")


def _adam_run(on: bool) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    params = {k: mx.array(rng.standard_normal(s).astype(np.float32)) for k, s in (("w", (64, 256)), ("v", (5000,)))}
    with _env("MLX_OPTIM_NATIVE", "1" if on else "0"):
        opt = mlx_optim.AdamW(learning_rate=1e-2, weight_decay=0.1, state_dtype="int8")
        for _ in range(3):
            grads = {  # gradients spanning several decades: blocks of very different scales
                k: mx.array((rng.standard_normal(p.shape) * 10.0 ** rng.integers(-6, 2, p.shape)).astype(np.float32))
                for k, p in params.items()
            }
            params = opt.apply_gradients(grads, params)
            mx.eval(params, opt.state)
    return params, dict(tree_flatten(opt.state))


def _bits(x: mx.array) -> np.ndarray:
    return np.atleast_1d(np.array(x)).view(np.uint8)


def adam8() -> Outcome:
    """Three int8 AdamW steps, native against the pure path: every state entry (codes, scales, counters) equal bit
    for bit, the parameters within one float32 ulp."""
    if not native.available():
        return "skip", None, f"not built here: {native._failed}"
    calls = []
    real = native.adam8

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    native.adam8 = counting
    try:
        p_fast, s_fast = _adam_run(True)
        used = bool(calls)
        p_pure, s_pure = _adam_run(False)
    finally:
        native.adam8 = real
    if not used:
        return "skip", None, "the native int8 step is not used here"
    unequal = [
        k
        for k, v in s_fast.items()
        if k not in s_pure or v.dtype != s_pure[k].dtype or not np.array_equal(_bits(v), _bits(s_pure[k]))
    ]
    ulps = max(
        int(np.abs(np.array(p_fast[k]).view(np.int32).astype(np.int64) - np.array(p_pure[k]).view(np.int32)).max())
        for k in p_fast
    )
    ratio = float("inf") if unequal else float(ulps)
    detail = f"parameters {ulps} float32 ulps apart" + (f"; state not equal: {', '.join(unequal)}" if unequal else "")
    return _verdict(ratio, detail)


def gram() -> Outcome:
    """``u u^T`` through the loaded BLAS's SYRK against MLX's matmul."""
    if not native.gram_available():
        return "skip", None, f"not used here: {native.gram_unavailable_reason()}"
    u = mx.random.normal((300, 700), key=mx.random.key(5))
    got, want = np.array(native.gram(u)), np.array(u @ u.T)
    tol = 1e-5 * float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    symmetric = bool(np.array_equal(got, got.T))
    ratio = diff / tol if symmetric else float("inf")
    return _verdict(ratio, f"max |diff| {diff:.3g} (tol {tol:.3g})" + ("" if symmetric else ", not symmetric"))


def run() -> list[tuple[str, Callable[[], Outcome]]]:
    """``(name, thunk)`` per native check; each thunk returns ``(verdict, error / tolerance, detail)``."""
    out: list[tuple[str, Callable[[], Outcome]]] = []
    for engine in ("mkl", "amx"):
        for shape in NS_SHAPES:
            name = f"newton_schulz {engine} {shape[0]}x{shape[1]}"
            out.append((name, lambda a=engine == "amx", s=shape: newton_schulz(a, s)))
    out += [("adam8 int8 AdamW", adam8), ("gram 300x700", gram)]
    return out


CHECKS = [name for name, _ in run()]
"""The native checks' names, in order."""
