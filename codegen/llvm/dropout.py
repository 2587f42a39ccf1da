"""The dropout mask kernel in LLVM IR: Philox4x32-10 words, 4 per counter, compared with floor(p 2^32)."""

from __future__ import annotations

from llvmlite import ir

from codegen.llvm.irutil import F32, I32, I64, const, i64, load_elem, loop, store_elem
from mlpc.ir import Op
from mlpc.ops.random import KEY_A, KEY_B, MASK32, ROUND_A, ROUND_B, ROUNDS, keep_scale, seed_key, threshold
from mlpc.types import DType


def _mulhilo(b: ir.IRBuilder, m: int, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    wide = b.mul(b.zext(x, I64), ir.Constant(I64, m))
    return b.trunc(b.lshr(wide, ir.Constant(I64, 32)), I32), b.trunc(wide, I32)


def philox(b: ir.IRBuilder, c: list[ir.Value], k0: int, k1: int) -> list[ir.Value]:
    """Ten Philox rounds on four i32 counters; the key schedule is folded into constants."""
    for r in range(ROUNDS):
        ka = ir.Constant(I32, (k0 + r * KEY_A) & MASK32)
        kb = ir.Constant(I32, (k1 + r * KEY_B) & MASK32)
        hi_a, lo_a = _mulhilo(b, ROUND_A, c[0])
        hi_b, lo_b = _mulhilo(b, ROUND_B, c[2])
        c = [b.xor(b.xor(hi_b, c[1]), ka), lo_b, b.xor(b.xor(hi_a, c[3]), kb), lo_a]
    return c


def emit_dropout_mask(c, op: Op) -> None:  # c: codegen.llvm.kernels.KCtx
    """One pass writing the f32 mask; its users (x * mask, g * mask) read it in their fused kernels."""
    b = c.b
    p, seed, stream = float(op.attrs["p"]), int(op.attrs["seed"]), int(op.attrs["stream"])
    size = op.result.type.size
    out = c.ptr(op.result)
    t = load_elem(b, DType.i32, c.ptr(op.operands[0]), i64(0))
    k0, k1 = seed_key(seed)
    thr = threshold(p)
    kept, dropped = const(F32, keep_scale(p)), const(F32, 0.0)

    def value(word: ir.Value) -> ir.Value:
        if thr == 0:
            return kept
        if thr >> 32:
            return dropped
        return b.select(b.icmp_unsigned(">=", word, ir.Constant(I32, thr)), kept, dropped)

    def group(g: ir.Value, count: int, start: ir.Value | None = None) -> None:
        words = philox(b, [b.trunc(g, I32), t, ir.Constant(I32, stream), ir.Constant(I32, 0)], k0, k1)
        base = b.mul(g, i64(4)) if start is None else b.sub(b.mul(g, i64(4)), start)
        for j in range(count):
            store_elem(b, DType.f32, value(words[j]), out, b.add(base, i64(j)))

    if len(op.operands) == 1:
        with loop(b, 0, size // 4, name="dm") as g:
            group(g, 4)
        if size % 4:
            group(i64(size // 4), size % 4)
        return
    # rows row0.. of a larger batch: positions [start, start + size), start = row0 * cols at run time
    row0 = b.sext(load_elem(b, DType.i32, c.ptr(op.operands[1]), i64(0)), I64)
    start = b.mul(row0, i64(op.result.type.shape[1]))

    def edge(g: ir.Value) -> None:  # a group only partly inside: store the words that fall in [0, size)
        words = philox(b, [b.trunc(g, I32), t, ir.Constant(I32, stream), ir.Constant(I32, 0)], k0, k1)
        base = b.sub(b.mul(g, i64(4)), start)
        for j in range(4):
            e = b.add(base, i64(j))
            inside = b.and_(b.icmp_signed(">=", e, i64(0)), b.icmp_signed("<", e, i64(size)))
            with b.if_then(inside):
                store_elem(b, DType.f32, value(words[j]), out, e)

    edge(b.lshr(start, i64(2)))
    with loop(b, b.lshr(b.add(start, i64(3)), i64(2)), b.lshr(b.add(start, i64(size)), i64(2)), name="dm") as g:
        group(g, 4, start)
    edge(b.lshr(b.add(start, i64(size - 1)), i64(2)))
