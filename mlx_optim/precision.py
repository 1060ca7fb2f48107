"""Low-precision optimizer state: bfloat16 with stochastic rounding.

Every mlx_optim optimizer accepts ``state_dtype=mx.bfloat16``: its state is kept
in bfloat16 (half the memory of float32 state), the update math still runs in
float32, and the updated state is written back with **stochastic rounding**
(:func:`stochastic_round`), which is unbiased: ``E[round(x)] = x``.

Why it matters: bfloat16 has 8 significant bits, so ``0.999`` is stored as
``1.0`` and, worse, ``0.999 * v`` rounds back to ``v`` for every ``v``: with
round-to-nearest, Adam's second moment never decays (``mlx.optimizers`` keeps
state in the parameter dtype and shows exactly this). With stochastic rounding
the decay happens *in expectation*, so the second moment of a constant-then-zero
gradient follows the float32 one (tests/test_precision.py states the tolerance).

The random key is ``state["rounding_key"]``: split once per step in the base
class and once per rounded array, saved with the state (exact resume) and
traced as state under ``mx.compile``. ``opt.stochastic_rounding = False``
switches to round-to-nearest. float16 state is rounded to nearest (no
stochastic rounding for it yet).
"""

from __future__ import annotations

import mlx.core as mx

__all__ = ["stochastic_round", "state_bytes"]


def stochastic_round(x: mx.array, dtype: mx.Dtype, key: mx.array) -> mx.array:
    """Round float32 ``x`` to ``dtype`` stochastically (bfloat16), to nearest otherwise.

    For bfloat16 (the upper 16 bits of a float32): add uniform random bits to
    the 16 bits that are dropped and truncate, so ``x`` rounds up with
    probability equal to its distance from the lower neighbour. Non-finite
    values are rounded to nearest (adding noise to inf's bits would make a NaN).
    """
    if dtype != mx.bfloat16:
        return x.astype(dtype)
    x = x.astype(mx.float32)
    noise = mx.random.randint(0, 1 << 16, x.shape, dtype=mx.uint32, key=key)
    bits = (x.view(mx.uint32) + noise) >> 16
    rounded = bits.astype(mx.uint16).view(mx.bfloat16)
    return mx.where(mx.isfinite(x), rounded, x.astype(mx.bfloat16))


def state_bytes(opt) -> int:
    """Bytes of per-parameter optimizer state (global scalars and keys excluded: every 0-d entry)."""
    from mlx.utils import tree_flatten  # noqa: PLC0415

    return sum(v.nbytes for k, v in tree_flatten(opt.state) if v.ndim > 0 and not k.endswith("rounding_key"))
