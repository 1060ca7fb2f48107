"""ZeRO-1 (:class:`mlx_optim.distributed.ZeroRedundancyOptimizer`) with int8 / int4 optimizer state: the sharded
checkpoint (``save_sharded`` / ``load_sharded``) holds the codes and scales and a resumed run continues bit for bit.

In-process, on the one-process group ``mx.distributed.init()`` gives; the 2-rank launches of
tests/test_distributed.py use a model whose leaves are all under the 4096-element threshold of quantized state.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_optim as mo
from mlx_optim import distributed as md

STEPS, RESUME_AT = 5, 2


def params() -> dict:
    rng = np.random.default_rng(0)
    return {
        "w": mx.array(rng.normal(scale=0.02, size=(64, 128)).astype(np.float32)),  # 8192: quantized
        "e": mx.array(rng.normal(scale=0.02, size=(50, 100)).astype(np.float32)),  # 5000: padded blocks
        "b": mx.array(rng.normal(scale=0.02, size=(128,)).astype(np.float32)),  # small: float32
    }


def grads(t: int) -> dict:
    rng = np.random.default_rng(100 + t)
    return {k: mx.array(rng.normal(scale=0.01, size=v.shape).astype(np.float32)) for k, v in params().items()}


def zero(fmt: str, group) -> md.ZeroRedundancyOptimizer:
    return md.ZeroRedundancyOptimizer(mo.AdamW(learning_rate=1e-2, weight_decay=1e-2, state_dtype=fmt), group)


def steps(opt, p: dict, ts) -> dict:
    for t in ts:
        p = opt.apply_gradients(grads(t), p)
        mx.eval(p, opt.state)
    return p


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_zero_checkpoint_with_quantized_state_resumes_exactly(fmt, tmp_path):
    group = mx.distributed.init()
    straight = steps(zero(fmt, group), params(), range(STEPS))

    first = zero(fmt, group)
    p = steps(first, params(), range(RESUME_AT))
    md.save_sharded(first, tmp_path)
    saved = mx.load(str(tmp_path / md.shard_filename(0, 1)))
    codes = {k: v for k, v in saved.items() if k.endswith(".codes")}
    assert set(codes) == {f"{leaf}.{m}.codes" for leaf in ("w", "e") for m in ("exp_avg", "exp_avg_sq")}
    assert all(v.dtype == mx.uint8 for v in codes.values())
    assert saved["b.exp_avg"].dtype == mx.float32

    resumed = zero(fmt, group)
    md.load_sharded(resumed, tmp_path, p)
    for (k, a), (_, b) in zip(tree_flatten(first.state), tree_flatten(resumed.state)):
        assert a.dtype == b.dtype and np.array_equal(np.array(a), np.array(b)), k
    p = steps(resumed, p, range(RESUME_AT, STEPS))
    for k in straight:
        assert np.array_equal(np.array(p[k]), np.array(straight[k])), k

    # the shard also loads into the unwrapped optimizer with the same format, and is refused by another one
    plain = mo.AdamW(learning_rate=1e-2, weight_decay=1e-2, state_dtype=fmt)
    md.load_sharded(plain, tmp_path, params(), strict=False)
    other = mo.AdamW(learning_rate=1e-2, state_dtype="int4" if fmt == "int8" else "int8")
    with pytest.raises(ValueError, match="in the checkpoint but"):
        md.load_sharded(other, tmp_path, params(), strict=False)
