"""Blockwise 8-bit and 4-bit optimizer state: ``state_dtype="int8"`` / ``"int4"``.

Every optimizer whose state holds per-element moments (Adam's ``exp_avg`` and ``exp_avg_sq``, Lion's ``exp_avg``,
SGD's ``momentum_buffer``, ...) accepts ``state_dtype="int8"`` or ``"int4"``, or a :class:`QuantizedState` for
the keywords (block size, rounding, size threshold)::

    opt = mlx_optim.AdamW(learning_rate=1e-4, state_dtype="int8")            # ~2 bytes per parameter
    opt = mlx_optim.AdamW(learning_rate=1e-4, state_dtype=QuantizedState(4, rounding="stochastic"))

The format is torchao's ``AdamW8bit`` / ``AdamW4bit`` (``torchao/optim/subclass_8bit.py``, ``subclass_4bit.py``,
``quant_utils.py``; the 8-bit method is Dettmers et al., 2110.02861, the 4-bit one Li et al., 2309.01507):

* each moment is flattened and cut into blocks of ``block_size`` entries (default 256 for 8 bits, 128 for 4);
  a block's scale is its absolute maximum, kept in float32 (torchao floors it at 1e-12; the state format here
  at the smallest normal float32, see :class:`QuantizedState`'s ``scale_floor``);
* the scaled entries (in [-1, 1]) are rounded to the nearest value of a fixed 256- or 16-entry map and stored as
  its index (uint8; two 4-bit codes per byte, the first in the high nibble, as torchao packs them):
  bitsandbytes' dynamic map (``create_dynamic_map``) for signed entries and for 8-bit non-negative ones, its
  3-exponent-bit version for 4-bit signed entries and the linear map 1/16, 2/16, ..., 1 (no zero) for 4-bit
  non-negative ones; "nearest" is torchao's rule (a value rounds up when its distance to the lower map value is
  at least half the gap, in float32), so codes and dequantized values equal torchao's bit for bit
  (tests/test_quantized.py checks both against a NumPy transcription of torchao's functions and the maps
  against torchao's own ``create_dynamic_map`` run with torch);
* ``rounding="stochastic"`` (not in torchao) rounds up with probability (distance to the lower map value) / gap,
  so the rounding is unbiased between the smallest and the largest map value;
* dequantization is ``map[code] * scale``. The update runs in float32 on the dequantized moments and its result
  is quantized again, as torchao does: the parameter update uses the unrounded new moments.

Which entries are quantized: the per-element moments an optimizer declares (:data:`MOMENTS`, or a class's
``moment_state`` attribute), when the entry has the parameter's shape and at least ``min_size`` elements (4096 by
default, the threshold of torchao and bitsandbytes); smaller ones, and every other entry (parameter copies such
as Prodigy's ``p0``, previous gradients, factored or matrix statistics), stay float32. An entry declared
non-negative (second moments) uses the unsigned map. Sizes that are not a multiple of the block are zero-padded
to one (torchao keeps such tensors in float32 instead); zeros do not change a block's scale.

Layout: the entry becomes ``{"codes": uint8 (padded size, or half of it for 4 bits), "scale": float32 (blocks,)}``
in the leaf's state, so the state stays a tree of arrays: ``mx.compile`` traces it, ``tree_flatten`` saves it and
a resumed state continues bit for bit. A freshly created entry keeps its absolute maximum as the scale without the
floor, so zeros dequantize to exactly 0 as torchao's zero-initialised states do.

Speed on the CPU: MLX's gather costs several element-wise passes there, and the 8-bit path gathers once to
dequantize (``map[code]``) and once to quantize (through a 32K-entry table on the float's bits); the 4-bit path has
no gather (15 comparisons, or for the linear map of second moments a multiply and a cast, and a tree of 15 selects
to dequantize; fused under ``mx.compile``). So Adam and AdamW with int8 state and nearest rounding run on the CPU
as one C++ pass per leaf (:mod:`mlx_optim.native`, built on first use; the same codes, scales and parameters); the
path here remains for everything else and where that extension cannot be built. ``benchmarks/peak_memory.py``
measures both (figures in the precision guide).

Memory: the base dequantizes a leaf's moments only after the previous leaf's new codes and new parameter exist
(one leaf's float32 moments at a time), and the quantizer runs on parts of large entries
(``QuantizedState.chunk_size``); ``benchmarks/peak_memory.py`` measures the optimizer's part of the update's peak.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import mlx.core as mx
import numpy as np

__all__ = [
    "MOMENTS",
    "QuantizedState",
    "dequantize_blockwise",
    "dynamic_map",
    "is_quantized",
    "moments_of",
    "parse_state_dtype",
    "quantize_blockwise",
    "quantization_map",
]

_F32 = np.float32
_ROUNDINGS = ("nearest", "stochastic")
_DEFAULT_BLOCK = {8: 256, 4: 128}
_MAX_CHUNKS = 16  # the state's quantizer runs on at most this many parts of an entry (QuantizedState.chunk_size)
MIN_SIZE = 4096  # torchao's and bitsandbytes' threshold: smaller tensors keep float32 state


# ----------------------------------------------------------------------------- the maps (NumPy, built once)
def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32 as torch's CPU kernel computes it: ``start + step * i``
    for the first half and ``end - step * (steps - 1 - i)`` for the rest, each with one rounding (a fused
    multiply-add; the float64 expression is exact here, so rounding it once to float32 is the fma's result)."""
    start32, end32 = _F32(start), _F32(end)
    step = _F32((end32 - start32) / _F32(steps - 1))
    i = np.arange(steps)
    low = (np.float64(step) * i + np.float64(start32)).astype(_F32)
    high = (np.float64(end32) - np.float64(step) * (steps - 1 - i)).astype(_F32)
    return np.where(i < steps // 2, low, high)


def dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> np.ndarray:
    """bitsandbytes' dynamic quantization map as torchao's ``create_dynamic_map`` builds it (sorted, float32).

    Args:
        signed: include the negated values (one sign bit).
        max_exponent_bits: decades of the map: ``10^-(max_exponent_bits - 1)`` up to 1.
        total_bits: 8 (256 values) or 4 (16 values, with ``max_exponent_bits=3``).
    """
    data: list[float] = []
    non_sign_bits = total_bits - 1
    if 2 ** (non_sign_bits - max_exponent_bits) - 1 > 0:
        raise ValueError("dynamic_map: only maps without additional linear items are supported")
    for i in range(max_exponent_bits):
        shift = i + non_sign_bits - max_exponent_bits + (0 if signed else 1)
        bounds = _linspace_f32(0.1, 1.0, 2**shift + 1)
        means = (bounds[:-1] + bounds[1:]) / _F32(2.0)
        power = _F32(10.0 ** (-(max_exponent_bits - 1) + i))  # torch multiplies the float32 tensor in float32
        data += (power * means).tolist()
        if signed:
            data += (-power * means).tolist()
    data += [0.0, 1.0]
    if len(data) != 2**total_bits:
        raise ValueError(f"dynamic_map: {len(data)} values for {total_bits} bits")
    return np.array(sorted(data), dtype=_F32)


@cache
def quantization_map(bits: int, signed: bool) -> np.ndarray:
    """The map of torchao's 8-bit / 4-bit optimizer states (see the module docstring)."""
    if bits == 8:
        return dynamic_map(signed)
    if signed:
        return dynamic_map(True, 3, 4)
    return _linspace_f32(0.0, 1.0, 17)[1:]  # torchao's QMAP_UNSIGNED for 4 bits: linear, without zero


def _reference_codes(y: np.ndarray, qmap: np.ndarray) -> np.ndarray:
    """torchao's ``quantize_{8,4}bit_with_qmap`` on NumPy float32 input (used to place the rounding thresholds)."""
    n = len(qmap)
    codes = np.zeros(y.shape, np.int64)
    step = n // 2
    while step >= 1:
        codes += np.where(y >= qmap[codes + step], step, 0)
        step //= 2
    up = np.minimum(codes + 1, n - 1)
    low, high = qmap[codes], qmap[up]
    return np.where((y - low) >= (high - low) * _F32(0.5), up, codes)


def _key(y: np.ndarray) -> np.ndarray:
    """Float32 -> int64 key, monotone in the value, with -0.0 and +0.0 equal (as in comparisons)."""
    bits = np.asarray(y, _F32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _from_key(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    return np.where(k < 0, (-k) | 0x80000000, k).astype(np.uint32).view(_F32)


@cache
def _thresholds(bits: int, signed: bool, nearest: bool) -> np.ndarray:
    """Keys ``t[c - 1]`` of the smallest float32 whose code is at least ``c`` (c = 1 .. len(map) - 1).

    Nearest: found by bisection on torchao's rule (the code is a non-decreasing function of the input).
    Floor (for stochastic rounding): the map values themselves.
    """
    qmap = quantization_map(bits, signed)
    if not nearest:
        return _key(qmap[1:])
    target = np.arange(1, len(qmap))
    low = np.full(len(target), _key(_F32(-2.0)), np.int64)  # code 0 there
    high = np.full(len(target), _key(_F32(2.0)), np.int64)  # the last code there
    while np.any(high - low > 1):
        mid = (low + high) // 2
        ok = _reference_codes(_from_key(mid), qmap) >= target
        high, low = np.where(ok, mid, high), np.where(ok, low, mid)
    return high


_SHIFT = 16  # buckets of 2^16 consecutive float32 keys (relative width 2^-7): at most one threshold in each
_KEY_LOW = int(_key(_F32(-1.0))) >> _SHIFT
_KEY_HIGH = int(_key(_F32(1.0))) >> _SHIFT


@cache
def _bucket_table(bits: int, signed: bool, nearest: bool) -> mx.array:
    """Per bucket of keys: ``code of the bucket's first key << 17 | low 16 bits of the threshold inside it``
    (65536: none), so the code of ``y`` is ``(e >> 17) + ((key & 0xFFFF) >= (e & 0x1FFFF))``."""
    t = _thresholds(bits, signed, nearest)
    start = np.arange(_KEY_LOW, _KEY_HIGH + 1, dtype=np.int64) << _SHIFT
    base = np.searchsorted(t, start, side="right")
    inside = np.searchsorted(t, start + (1 << _SHIFT) - 1, side="right") - base
    if inside.max() > 1:
        raise AssertionError("two quantization thresholds in one bucket")
    low_bits = np.full(len(start), 1 << _SHIFT, np.int64)
    low_bits[inside == 1] = t[base[inside == 1]] - start[inside == 1]
    return mx.array(((base << 17) | low_bits).astype(np.int32))


@cache
def _map_array(signed: bool) -> mx.array:
    return mx.array(quantization_map(8, signed))


@cache
def _neighbour_table(bits: int, signed: bool) -> mx.array:
    """Row ``c``: ``(map[c], map[min(c + 1, last)])`` (stochastic rounding)."""
    q = quantization_map(bits, signed)
    return mx.array(np.stack([q, np.append(q[1:], q[-1])], axis=1))


# ----------------------------------------------------------------------------- codes <-> values (MLX)
def _mx_key(y: mx.array) -> mx.array:
    bits = y.view(mx.int32)
    return mx.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _codes8(y: mx.array, table: mx.array) -> mx.array:
    key = _mx_key(y)
    # the bucket and the key's low 16 bits come out of one fused kernel, so ``y`` is freed before the gather
    bucket, low = mx.clip((key >> _SHIFT) - _KEY_LOW, 0, table.size - 1), (key & 0xFFFF).astype(mx.uint16)
    entry = mx.take(table, bucket)
    return ((entry >> 17) + (low.astype(mx.int32) >= (entry & 0x1FFFF)).astype(mx.int32)).astype(mx.uint8)


def _codes4(y: mx.array, thresholds: np.ndarray) -> mx.array:
    """The number of ``thresholds`` (15 sorted keys) at or below ``y``: 15 comparisons with constants summed as a
    balanced tree (fused under ``mx.compile``; no gather). Measured faster on the CPU than a branch-free binary
    search, whose selects of constants take MLX's broadcasting path."""
    terms = [(y >= t).astype(mx.uint8) for t in _from_key(thresholds).tolist()]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _linear_codes4(y: mx.array) -> mx.array:
    """Nearest codes of the 4-bit linear map (k/16, k = 1..16): ``floor(16 y + 0.5) - 1`` clipped to [0, 15] (the
    float -> int cast truncates, which is the floor wherever the result is not clipped to 0). ``16 y`` is exact
    and adding 0.5 rounds only where both rules give code 0, so this is torchao's rule (the round-trip test
    checks it at and around every threshold)."""
    return mx.clip((y * 16.0 + 0.5).astype(mx.int32) - 1, 0, 15).astype(mx.uint8)


def _select16(codes: mx.array, values: np.ndarray) -> mx.array:
    """``values[codes]`` for 4-bit codes without a gather: a tree of 15 selects on the code's bits."""
    level: list[Any] = [mx.array(float(v), mx.float32) for v in values]
    bit = 0
    while len(level) > 1:
        on = ((codes >> bit) & 1).astype(mx.bool_)
        level = [mx.where(on, level[2 * i + 1], level[2 * i]) for i in range(len(level) // 2)]
        bit += 1
    return level[0]


def _round_codes(y: mx.array, bits: int, signed: bool, key: mx.array | None) -> mx.array:
    """Codes of scaled values ``y`` (float32): nearest (``key is None``) or stochastic."""
    if key is None:
        if bits == 8:
            return _codes8(y, _bucket_table(8, signed, True))
        return _codes4(y, _thresholds(4, True, True)) if signed else _linear_codes4(y)
    if bits == 8:
        low = _codes8(y, _bucket_table(8, signed, False))
        pair = mx.take(_neighbour_table(8, signed), low, axis=0)
        q_low, q_high = pair[..., 0], pair[..., 1]
    else:
        low = _codes4(y, _thresholds(4, signed, False))
        qmap = quantization_map(4, signed)
        q_low = _select16(low, qmap)
        q_high = _select16(low, np.append(qmap[1:], qmap[-1]))
    u = mx.random.uniform(shape=y.shape, key=key)
    up = (y - q_low) >= (q_high - q_low) * u
    last = (1 << bits) - 1
    return mx.where(up & (low < last), low + 1, low).astype(mx.uint8)


def _block_absmax(blocks: mx.array) -> mx.array:
    """``max(|blocks|)`` per row, shape (rows, 1). In two stages when the block factors as ``a * b`` with
    ``a, b >= 8``: a reduction over the middle axis of (rows, a, b) is vectorized on the CPU, one over a short
    last axis is not (``benchmarks/peak_memory.py``)."""
    rows, block = blocks.shape
    a = max((d for d in range(8, math.isqrt(block) + 1) if block % d == 0), default=0)
    shape = (rows, a, block // a) if a else (rows, 1, block)
    # max(max, -min) instead of the maximum of |x|: no block-sized temporary (the same value; NaN propagates)
    parts = blocks.reshape(shape)
    high = mx.max(mx.max(parts, axis=1), axis=1, keepdims=True)
    low = mx.min(mx.min(parts, axis=1), axis=1, keepdims=True)
    return mx.abs(mx.maximum(high, -low))  # abs: +0.0 for a zero block


def quantize_blockwise(
    x: mx.array,
    *,
    bits: int = 8,
    signed: bool = True,
    block_size: int | None = None,
    key: mx.array | None = None,
    scale_floor: float = 1e-12,
    floor_stored: bool = True,
    chunks: int = 1,
) -> tuple[mx.array, mx.array]:
    """Blockwise quantization of ``x`` (any shape) to ``(codes, scale)``, torchao's format.

    Args:
        x: the values; computed in float32.
        bits: 8 or 4.
        signed: the signed map (False: the map for non-negative values).
        block_size: entries per scale (default 256 for 8 bits, 128 for 4); ``x`` is zero-padded to a multiple.
        key: a random key for stochastic rounding; None rounds to nearest (torchao's rule).
        scale_floor: the scale is ``max(absmax, scale_floor)``; 1e-12 is torchao's ``scale_tensor``.
        floor_stored: store that scale; False stores the absolute maximum itself (the values are still divided
            by the floored one), so a zero block dequantizes to exact zeros.
        chunks: quantize the blocks in this many consecutive parts, one after the other (``mx.depends``), so the
            quantizer's temporaries (about 2.5 float32-sized arrays) are those of one part; the result is the
            same. Nearest rounding only (stochastic rounding draws its random numbers for ``x`` at once).

    Returns:
        ``codes``: uint8 of the padded size (8 bits) or half of it (4 bits, two codes per byte, the first in the
        high nibble); ``scale``: float32, one per block.
    """
    block = block_size or _DEFAULT_BLOCK[bits]
    flat = x.reshape(-1).astype(mx.float32)
    pad = (-flat.size) % block
    if pad:
        flat = mx.concatenate([flat, mx.zeros((pad,), mx.float32)])
    blocks = flat.reshape(-1, block)
    rows = blocks.shape[0]
    parts = 1 if key is not None else max(1, min(chunks, rows))
    bounds = [rows * i // parts for i in range(parts + 1)]
    codes_parts, scale_parts = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = blocks[lo:hi] if parts > 1 else blocks
        if codes_parts:  # one chunk's temporaries at a time
            part = mx.depends(part, codes_parts[-1])
        absmax = _block_absmax(part)
        floored = mx.maximum(absmax, scale_floor)
        codes = _round_codes((part / floored).reshape(-1), bits, signed, key)
        if bits == 4:
            pairs = codes.reshape(-1, 2)
            codes = (pairs[:, 0] << 4) | pairs[:, 1]
        codes_parts.append(codes)
        scale_parts.append((floored if floor_stored else absmax).reshape(-1))
    if parts == 1:
        return codes_parts[0], scale_parts[0]
    return mx.concatenate(codes_parts), mx.concatenate(scale_parts)


def dequantize_blockwise(
    codes: mx.array, scale: mx.array, *, bits: int = 8, signed: bool = True, shape: Any = None
) -> mx.array:
    """Inverse of :func:`quantize_blockwise`: ``map[code] * scale`` in float32, reshaped to ``shape`` (the padding
    dropped); ``shape=None`` returns the padded flat values."""
    if bits == 8:
        values = mx.take(_map_array(signed), codes)
    else:
        nibbles = ((codes[:, None] >> mx.array([4, 0], mx.uint8)) & 15).reshape(-1)  # first code: high nibble
        values = _select16(nibbles, quantization_map(4, True)) if signed else (nibbles + 1).astype(mx.float32) * 0.0625
    values = (values.reshape(scale.size, -1) * scale[:, None]).reshape(-1)
    if shape is None:
        return values
    size = int(np.prod(shape))
    return (values[:size] if values.size != size else values).reshape(shape)


# ----------------------------------------------------------------------------- the state format
@dataclass(frozen=True)
class QuantizedState:
    """A quantized state format, given as an optimizer's ``state_dtype`` (``"int8"`` is ``QuantizedState(8)``).

    Args:
        bits: 8 or 4.
        block_size: entries per scale; default 256 (8 bits) / 128 (4 bits) as torchao; even.
        rounding: ``"nearest"`` (torchao's rule, bit for bit) or ``"stochastic"`` (unbiased between map values).
        min_size: entries with fewer elements stay float32 (default 4096, as torchao and bitsandbytes).
        scale_floor: the smallest block scale. torchao uses 1e-12; the default here is the smallest normal float32
            (1.2e-38), because moments that are legitimately below 1e-12 (Prodigy's and D-Adaptation's, scaled by
            d ~ 1e-6 or its square in the first steps) quantized against 1e-12 round mostly to 0 in the 8-bit
            unsigned map, and a second moment of 0 under a non-zero first moment made Prodigy's second step
            5000x too large (measured). Blocks whose maximum is at least 1e-12 are not affected.
        chunk_size: quantize an entry in consecutive parts of at least this many elements (at most 16 parts, one
            after the other; the codes are the same), so the quantizer's temporaries (about 2.5 float32 arrays)
            are a part's, not the entry's; 0: whole entries. Measured (AdamW int8, one CPU update stream): on six
            2048x2048 leaves the step's peak above its inputs was 244 MB whole and 64 MB in 16 parts, same CPU time;
            on the tiny-lm tree (leaves of at most 16K elements, so the default leaves them whole) 907 KB whole and
            413 KB with ``chunk_size=4096``, but on the LoRA tree of benchmarks/peak_memory.py (16K-element leaves)
            4096 doubled the step's CPU time (per-operation overhead; 8192: +45%). The default, 65536, splits only
            entries whose temporaries are at least a few MB.
    """

    bits: int = 8
    block_size: int | None = None
    rounding: str = "nearest"
    min_size: int = MIN_SIZE
    scale_floor: float = float(np.finfo(np.float32).tiny)
    chunk_size: int = 65536

    def __post_init__(self) -> None:
        if self.bits not in _DEFAULT_BLOCK:
            raise ValueError(f"QuantizedState: bits={self.bits!r} must be 8 or 4")
        block = _DEFAULT_BLOCK[self.bits] if self.block_size is None else self.block_size
        if not isinstance(block, int) or block < 2 or block % 2:
            raise ValueError(f"QuantizedState: block_size={self.block_size!r} must be an even integer >= 2")
        object.__setattr__(self, "block_size", block)
        if self.rounding not in _ROUNDINGS:
            raise ValueError(f"QuantizedState: rounding={self.rounding!r} must be one of {_ROUNDINGS}")
        if not isinstance(self.min_size, int) or self.min_size < 0:
            raise ValueError(f"QuantizedState: min_size={self.min_size!r} must be a non-negative integer")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 0:
            raise ValueError(f"QuantizedState: chunk_size={self.chunk_size!r} must be a non-negative integer")
        if not float(self.scale_floor) > 0.0:
            raise ValueError(f"QuantizedState: scale_floor={self.scale_floor!r} must be positive")

    @property
    def name(self) -> str:
        return f"int{self.bits}"

    @property
    def stochastic(self) -> bool:
        return self.rounding == "stochastic"

    def applies(self, value: Any, parameter: mx.array) -> bool:
        return (
            isinstance(value, mx.array)
            and value.shape == parameter.shape
            and mx.issubdtype(value.dtype, mx.floating)
            and value.size >= max(self.min_size, 1)
        )

    def quantize(self, x: mx.array, nonnegative: bool, key: mx.array | None = None, fresh: bool = False) -> dict:
        codes, scale = quantize_blockwise(
            x,
            bits=self.bits,
            signed=not nonnegative,
            block_size=self.block_size,
            key=key,
            scale_floor=self.scale_floor,
            floor_stored=not fresh,
            chunks=max(1, min(_MAX_CHUNKS, x.size // self.chunk_size)) if self.chunk_size else 1,
        )
        return {"codes": codes, "scale": scale}

    def dequantize(self, entry: Mapping, nonnegative: bool, shape: Any, where: str = "") -> mx.array:
        size = int(np.prod(shape))
        padded = size + (-size) % self.block_size
        expected = (padded * self.bits // 8,)
        if tuple(entry["codes"].shape) != expected or entry["scale"].size != padded // self.block_size:
            raise ValueError(
                f"quantized state entry {where!r} does not match the {self.name} format with block_size="
                f"{self.block_size} for shape {tuple(shape)}: was it saved with another state_dtype?"
            )
        return dequantize_blockwise(entry["codes"], entry["scale"], bits=self.bits, signed=not nonnegative, shape=shape)


def is_quantized(value: Any) -> bool:
    return isinstance(value, dict) and "codes" in value and "scale" in value


# ----------------------------------------------------------------------------- which state is quantized
_S, _U = False, True  # signed, non-negative (unsigned map)
_ADAM = {"exp_avg": _S, "exp_avg_sq": _U, "max_exp_avg_sq": _U}
_BELIEF = {"exp_avg": _S, "exp_avg_var": _U, "max_exp_avg_var": _U}
_MOMENTUM = {"momentum_buffer": _S}

# Registry name -> {state entry: non-negative}: the per-element moments (parameter-shaped EMAs or sums of
# gradients and their squares). Parameter copies (``p0``, ``x0``, slow weights, Schedule-Free's ``z``), previous
# gradients, D-Adaptation's ``s`` and factored / matrix statistics are left out on purpose: they stay float32.
# Subclasses (the ``_e`` / ``_sn`` variants) inherit their base's entry; a class attribute ``moment_state`` (a
# mapping like these) takes precedence. tests/test_quantized.py steps every optimizer listed here with int8 and
# int4 state and checks that every listed entry it creates is quantized.
MOMENTS: dict[str, dict[str, bool]] = {
    **dict.fromkeys(
        "adam adamw nadam radam nadamw adabound adaboundw adamp adams msvag padam yogi adagc adamc avagrad adopt "
        "diffgrad exadam grams laprop adamwsn lamb mars qhadam spam stableadamw stablespam ralars sparseadam tadam "
        "ano dualadam sara ranger ranger2020 rangerqh rangerva emonavi dadaptadam prodigy".split(),
        _ADAM,
    ),
    "adamax": {"exp_avg": _S, "exp_inf": _U},
    "adabelief": _BELIEF,
    "adanorm": _BELIEF,
    "aida": _BELIEF,
    "adamod": {**_ADAM, "exp_avg_lr": _U},
    "adapnm": {**_ADAM, "neg_exp_avg": _S},
    "ademamix": {**_ADAM, "exp_avg_slow": _S},
    "simplifiedademamix": _ADAM,
    "fadam": {"momentum": _S, "fim": _U},
    "adan": {**_ADAM, "exp_avg_diff": _S},
    "dadaptadan": {**_ADAM, "exp_avg_diff": _S},
    "grokfastadamw": {**_ADAM, "grok_exp_avg": _S},
    "swats": {**_ADAM, **_MOMENTUM},
    "novograd": {"moments": _S},
    "ranger21": {"grad_ma": _S, "variance_ma": _U, "neg_grad_ma": _S, "max_variance_ma": _U},
    "ranger25": {**_ADAM, "exp_avg_slow": _S},
    "lion": {"exp_avg": _S},
    "tiger": {"exp_avg": _S},
    "dadaptlion": {"exp_avg": _S},
    "emolynx": {"exp_avg": _S},
    "adafactor": {"exp_avg": _S},
    "came": {"exp_avg": _S},
    "adammini": {"m": _S, "v": _U},
    "schedulefreeadamw": {"exp_avg_sq": _U},
    "schedulefreeradam": {"exp_avg_sq": _U},
    "adahessian": {"exp_avg": _S, "exp_hessian_diag_sq": _U},
    "sophiag": {"exp_avg": _S, "hessian": _S},
    "sophiah": {"momentum": _S, "hessian_moment": _S},
    "soap": {"exp_avg": _S, "exp_avg_sq": _U},
    "shampoo": _MOMENTUM,
    "kron": _MOMENTUM,
    "muon": _MOMENTUM,
    "distributedmuon": _MOMENTUM,
    "muonclip": _MOMENTUM,
    "normuon": _MOMENTUM,
    "spectralsphere": _MOMENTUM,
    "adago": _MOMENTUM,
    "sgd": _MOMENTUM,
    "sgdw": _MOMENTUM,
    "signsgd": _MOMENTUM,
    "accsgd": _MOMENTUM,
    "qhm": _MOMENTUM,
    "lars": _MOMENTUM,
    "sgdsai": _MOMENTUM,
    "sgdp": {"momentum": _S},
    "pnm": {"pos_momentum": _S, "neg_momentum": _S},
    "adadelta": {"square_avg": _U, "acc_delta": _U},
    "rmsprop": {"square_avg": _U, "momentum_buffer": _S, "grad_avg": _S},
    "adagrad": {"sum": _U},
}


def moments_of(cls: type) -> dict[str, bool]:
    """The quantizable moments of an optimizer class: ``{entry: non-negative}`` (empty: none)."""
    for klass in cls.__mro__:
        own = vars(klass)
        if own.get("moment_state") is not None:
            return dict(own["moment_state"])
        if own.get("name") in MOMENTS:
            return MOMENTS[own["name"]]
    return {}


def parse_state_dtype(cls: type, state_dtype: Any) -> tuple[mx.Dtype | None, QuantizedState | None]:
    """Split an optimizer's ``state_dtype`` argument into ``(dtype, quantization)``; raise ``ValueError`` for an
    invalid value or for a quantized format on an optimizer without per-element moments."""
    owner = cls.__name__
    if state_dtype is None or isinstance(state_dtype, mx.Dtype):
        return state_dtype, None
    if isinstance(state_dtype, str) and state_dtype in ("int8", "int4"):
        state_dtype = QuantizedState(int(state_dtype[3:]))
    elif isinstance(state_dtype, Mapping):  # a config file's {"bits": 8, "block_size": 128, ...}
        state_dtype = QuantizedState(**state_dtype)
    if not isinstance(state_dtype, QuantizedState):
        raise ValueError(
            f"{owner}: state_dtype={state_dtype!r} must be an mx.Dtype, 'int8', 'int4', a QuantizedState (or a "
            "mapping of its keywords) or None"
        )
    if not moments_of(cls):
        raise ValueError(
            f"{owner}: state_dtype={state_dtype.name!r} quantizes per-element moment state, and {owner} declares "
            "none (mlx_optim.quantized.MOMENTS); use mx.bfloat16 for a smaller state"
        )
    return None, state_dtype


# ----------------------------------------------------------------------------- per-leaf hooks used by the base
def quantize_new_state(fmt: QuantizedState, moments: Mapping[str, bool], parameter: mx.array, state: dict) -> None:
    """After ``init_single``: replace the eligible moments of one leaf by their codes (scale without floor)."""
    for name, nonnegative in moments.items():
        if fmt.applies(state.get(name), parameter):
            state[name] = fmt.quantize(state[name], nonnegative, fresh=True)


def load_state(
    fmt: QuantizedState,
    moments: Mapping[str, bool],
    parameter: mx.array,
    state: dict,
    path: str,
    after: Sequence[mx.array] = (),
):
    """Replace one leaf's quantized moments by float32 arrays; returns what :func:`store_state` needs.

    A declared moment that is still a float array (created by an ``init`` that bypasses the base's, or resumed
    from a float32 checkpoint) is used as it is and quantized by :func:`store_state`. ``after``: arrays the
    dequantization waits for (``mx.depends``). The base passes the previous leaf's new codes, so the leaves'
    float32 working sets do not pile up: without it MLX dequantized many leaves before their updates (measured on
    six 2048x2048 leaves, AdamW int8: 292 MB above the step's outputs unchained, 203 MB chained, about two
    leaves' working sets of ~7 leaf-sized float32 arrays each)."""
    loaded = []
    for name, nonnegative in moments.items():
        entry = state.get(name)
        if is_quantized(entry):
            if after:
                entry = {"codes": mx.depends(entry["codes"], list(after)), "scale": entry["scale"]}
            value = fmt.dequantize(entry, nonnegative, parameter.shape, f"{path}.{name}")
            state[name] = value
            loaded.append((name, nonnegative, entry, value))
        elif fmt.applies(entry, parameter):
            loaded.append((name, nonnegative, None, entry))
    return loaded


def store_state(fmt: QuantizedState, state: dict, loaded: list, next_key: Callable[[], mx.array]) -> list[mx.array]:
    """Quantize the moments :func:`load_state` restored; an entry the update did not replace keeps its codes
    (requantizing dequantized values is not the identity: a block whose maximum is negative would shrink).
    Returns the new codes."""
    written = []
    for name, nonnegative, entry, value in loaded:
        new = state[name]
        if new is value and entry is not None:
            state[name] = entry
        else:
            if written:  # one entry's quantizer temporaries at a time (25M tree: 48 MB less peak)
                new = mx.depends(new, written[-1])
            state[name] = fmt.quantize(new, nonnegative, next_key() if fmt.stochastic else None)
            written.append(state[name]["codes"])
    return written
