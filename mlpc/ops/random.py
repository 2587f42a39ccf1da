"""Counter-based random bits: Philox-4x32-10 and the `dropout_mask` op built on it.

Element e (flat position row * cols + col of a [rows, cols] mask) takes word e % 4 of
Philox4x32-10(counter = (e // 4, t, stream, 0), key = (seed & 0xffffffff, seed >> 32)), the generator of
Salmon et al. 2011 (Random123) and of triton.language.philox. It is kept when that word is >= floor(p 2^32)
and then holds 1/(1-p) (rounded to float32), else 0. Everything before the comparison is integer
arithmetic, so the NumPy reference, LLVM and Triton draw the same masks bit for bit, and a row's mask
does not depend on how many rows the batch has.

An optional second operand `row0` (i32[]) shifts the positions to those of rows row0, row0 + 1, ... of a
larger batch: a data-parallel rank holding rows [row0, row0 + rows) of the global batch draws exactly
the rows one process would (passes/distribute.py adds it)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ops.registry import Attrs, OpDef, register
from mlpc.types import DType, TensorType

ROUND_A, ROUND_B = 0xD2511F53, 0xCD9E8D57  # the multipliers
KEY_A, KEY_B = 0x9E3779B9, 0xBB67AE85      # the Weyl key increments
ROUNDS = 10
MASK32 = 0xFFFFFFFF


def philox4x32(c0, c1, c2, c3, k0: int, k1: int, rounds: int = ROUNDS):
    """Philox4x32 on uint32 arrays (or Python ints); returns the four output words as uint32 arrays."""
    c = [np.asarray(v, np.uint64) & MASK32 for v in (c0, c1, c2, c3)]
    ka, kb = np.uint64(k0 & MASK32), np.uint64(k1 & MASK32)
    for _ in range(rounds):
        pa = np.uint64(ROUND_A) * c[0]
        pb = np.uint64(ROUND_B) * c[2]
        c = [(pb >> np.uint64(32)) ^ c[1] ^ ka, pb & np.uint64(MASK32),
             (pa >> np.uint64(32)) ^ c[3] ^ kb, pa & np.uint64(MASK32)]
        ka = (ka + np.uint64(KEY_A)) & np.uint64(MASK32)
        kb = (kb + np.uint64(KEY_B)) & np.uint64(MASK32)
    return [v.astype(np.uint32) for v in c]


def threshold(p: float) -> int:
    """Words below this are dropped: floor(p 2^32), 2^32 when p = 1 (everything dropped)."""
    return min(int(float(p) * 4294967296.0), 1 << 32)


def keep_scale(p: float) -> float:
    """The float32 value a kept element of the mask holds."""
    return float(np.float32(1.0 / (1.0 - p))) if p < 1.0 else 0.0


def seed_key(seed: int) -> tuple[int, int]:
    return seed & MASK32, (seed >> 32) & MASK32


def random_words(t: int, seed: int, stream: int, size: int, start: int = 0) -> np.ndarray:
    """The uint32 word of each of the `size` flat positions from `start` on, for step t."""
    first, end = start // 4, -(-(start + size) // 4)
    g = np.arange(first, end, dtype=np.uint64)
    k0, k1 = seed_key(seed)
    words = philox4x32(g, np.full_like(g, int(t) & MASK32), np.full_like(g, stream & MASK32), np.zeros_like(g),
                       k0, k1)
    skip = start - 4 * first
    return np.stack(words, axis=1).reshape(-1)[skip:skip + size]


def _mask_ref(t, *rest, p, seed, stream, shape):
    size = int(np.prod(shape, dtype=np.int64))
    start = int(np.asarray(rest[0])) * int(shape[1]) if rest else 0
    words = random_words(int(np.asarray(t)), seed, stream, size, start)
    keep = words.astype(np.uint64) >= np.uint64(threshold(p))
    return np.where(keep, np.float32(keep_scale(p)), np.float32(0.0)).reshape(shape)


def _mask_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) not in (1, 2) or any(t != TensorType(DType.i32, ()) for t in types):
        raise ShapeError(f"dropout_mask takes the step count t and optionally the first row's position row0 "
                         f"(both i32[]), got {[str(t) for t in types]}")
    if not 0.0 <= attrs["p"] <= 1.0:
        raise ShapeError(f"dropout_mask: p must be in [0, 1], got {attrs['p']}")
    if not 0 <= attrs["seed"] < 1 << 64 or not 0 <= attrs["stream"] < 1 << 32:
        raise ShapeError("dropout_mask: seed must fit in 64 bits and stream in 32 bits, both >= 0")
    shape = tuple(attrs["shape"])
    if len(shape) != 2:
        raise ShapeError(f"dropout_mask makes a [rows, cols] mask, got shape {list(shape)}")
    return [TensorType(DType.f32, shape)]


register(OpDef("dropout_mask", "other", _mask_infer, _mask_ref, lambda b, op, cts: [None],
               {"p": 0.5, "seed": 0, "stream": 0, "shape": ()},
               "0 or 1/(1-p) per element from Philox4x32-10 keyed by (seed, step t, stream, position)",
               # integer work, counted as operations: 10 Philox rounds of ~8 per 4 elements, a compare and select each
               flops=lambda op: 22 * op.result.type.size))
