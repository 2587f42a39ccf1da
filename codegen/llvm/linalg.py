"""Kernels for the linear-algebra ops Newton's method needs: eye, concat, slice, linear_solve."""

from __future__ import annotations

import math

from llvmlite import ir

from codegen.llvm.irutil import F32, F64, I1, alloca_entry, elem_type, gep, i64, intrinsic, load_elem, loop, store_elem
from codegen.llvm.kernels import KCtx
from mlpc.ir import Op
from mlpc.types import DType


def emit_eye(c: KCtx, op: Op) -> None:
    b = c.b
    n = op.result.shape[0]
    dt = op.result.dtype
    if dt == DType.i1:
        one, zero = ir.Constant(I1, 1), ir.Constant(I1, 0)
    else:
        ty = elem_type(dt)
        one, zero = (ir.Constant(ty, 1.0), ir.Constant(ty, 0.0)) if dt == DType.f32 else \
            (ir.Constant(ty, 1), ir.Constant(ty, 0))
    out = c.ptr(op.result)
    with loop(b, 0, n, name="er") as r:
        with loop(b, 0, n, name="ec") as col:
            store_elem(b, dt, b.select(b.icmp_signed("==", r, col), one, zero), out, b.add(b.mul(r, i64(n)), col))


def _axis(op: Op) -> int:
    rank = len(op.result.shape)
    return int(op.attrs["axis"]) % rank


def emit_copy(c: KCtx, op: Op) -> None:
    """concat / slice as contiguous block copies: [outer, axis, inner] views of the tensors."""
    ax = _axis(op)
    out_shape = op.result.shape
    outer = math.prod(out_shape[:ax])
    inner = math.prod(out_shape[ax + 1:])
    dt = op.result.dtype
    dst = c.ptr(op.result)
    total = out_shape[ax]
    if op.name == "concat":
        start = 0
        for v in op.operands:
            size = v.shape[ax]
            _blocks(c, dt, c.ptr(v), dst, outer, size * inner, size * inner, total * inner, 0, start * inner)
            start += size
        return
    x = op.operands[0]
    _blocks(c, dt, c.ptr(x), dst, outer, total * inner, x.shape[ax] * inner, total * inner,
            int(op.attrs["start"]) * inner, 0)


def _blocks(c: KCtx, dt: DType, src: ir.Value, dst: ir.Value, outer: int, length: int, src_stride: int,
            dst_stride: int, src_off: int, dst_off: int) -> None:
    b = c.b
    with loop(b, 0, outer, name="bo") as o:
        s0 = b.add(b.mul(o, i64(src_stride)), i64(src_off))
        d0 = b.add(b.mul(o, i64(dst_stride)), i64(dst_off))
        with loop(b, 0, length, name="bi") as i:
            store_elem(b, dt, load_elem(b, dt, src, b.add(s0, i)), dst, b.add(d0, i))


def solve_scratch_bytes(op: Op) -> int:
    n = op.operands[0].shape[0]
    k = op.operands[1].type.size // n
    return 8 * (n * n + n * k)


def emit_solve(c: KCtx, op: Op) -> None:
    """x = (A + shift I)^-1 b in float64 by LU with partial pivoting (both `method`s: the solution is
    the same up to rounding). A singular system gives NaN (the trainer then stops on a NaN loss)."""
    b = c.b
    a, rhs = op.operands
    n = a.shape[0]
    k = rhs.type.size // n
    assert c.scratch is not None
    m = c.scratch                           # n x n f64
    r = gep(b, F64, c.scratch, i64(n * n))  # n x k f64
    src_a, src_b, out = c.ptr(a), c.ptr(rhs), c.ptr(op.result)
    shift = ir.Constant(F64, float(op.attrs["shift"]))
    with loop(b, 0, n, name="ca") as i:
        with loop(b, 0, n, name="cb") as j:
            idx = b.add(b.mul(i, i64(n)), j)
            v = b.fpext(b.load(gep(b, F32, src_a, idx), typ=F32), F64)
            v = b.select(b.icmp_signed("==", i, j), b.fadd(v, shift), v)
            b.store(v, gep(b, F64, m, idx))
    with loop(b, 0, n * k, name="cr") as i:
        b.store(b.fpext(b.load(gep(b, F32, src_b, i), typ=F32), F64), gep(b, F64, r, i))
    bad = alloca_entry(b, I1, "singular")
    b.store(ir.Constant(I1, 0), bad)
    piv_row = alloca_entry(b, ir.IntType(64), "piv")
    best = alloca_entry(b, F64, "best")

    def at(base: ir.Value, row: ir.Value, col: ir.Value, width: int) -> ir.Value:
        return gep(b, F64, base, b.add(b.mul(row, i64(width)), col))

    def swap(base: ir.Value, r1: ir.Value, r2: ir.Value, col: ir.Value, width: int) -> None:
        p1, p2 = at(base, r1, col, width), at(base, r2, col, width)
        x1, x2 = b.load(p1, typ=F64), b.load(p2, typ=F64)
        b.store(x2, p1)
        b.store(x1, p2)
    with loop(b, 0, n, name="lu") as col:
        b.store(col, piv_row)
        b.store(intrinsic(b, "fabs", F64, [b.load(at(m, col, col, n), typ=F64)]), best)
        with loop(b, b.add(col, i64(1)), i64(n), name="ps") as row:
            v = intrinsic(b, "fabs", F64, [b.load(at(m, row, col, n), typ=F64)])
            better = b.fcmp_ordered(">", v, b.load(best, typ=F64))
            b.store(b.select(better, v, b.load(best, typ=F64)), best)
            b.store(b.select(better, row, b.load(piv_row, typ=ir.IntType(64))), piv_row)
        zero = b.fcmp_unordered("ueq", b.load(best, typ=F64), ir.Constant(F64, 0.0))
        b.store(b.or_(b.load(bad, typ=I1), zero), bad)
        p = b.load(piv_row, typ=ir.IntType(64))
        with loop(b, 0, n, name="sw") as j:
            swap(m, col, p, j, n)
        with loop(b, 0, k, name="swr") as j:
            swap(r, col, p, j, k)
        pivot = b.load(at(m, col, col, n), typ=F64)
        with loop(b, b.add(col, i64(1)), i64(n), name="el") as row:
            f = b.fdiv(b.load(at(m, row, col, n), typ=F64), pivot)
            with loop(b, b.add(col, i64(1)), i64(n), name="ej") as j:
                q = at(m, row, j, n)
                b.store(b.fsub(b.load(q, typ=F64), b.fmul(f, b.load(at(m, col, j, n), typ=F64))), q)
            with loop(b, 0, k, name="er") as j:
                q = at(r, row, j, k)
                b.store(b.fsub(b.load(q, typ=F64), b.fmul(f, b.load(at(r, col, j, k), typ=F64))), q)
    with loop(b, 0, n, name="bk") as t:
        row = b.sub(i64(n - 1), t)
        with loop(b, 0, k, name="bq") as q:
            acc = alloca_entry(b, F64, "acc")
            b.store(b.load(at(r, row, q, k), typ=F64), acc)
            with loop(b, b.add(row, i64(1)), i64(n), name="bj") as j:
                prod = b.fmul(b.load(at(m, row, j, n), typ=F64), b.load(at(r, j, q, k), typ=F64))
                b.store(b.fsub(b.load(acc, typ=F64), prod), acc)
            b.store(b.fdiv(b.load(acc, typ=F64), b.load(at(m, row, row, n), typ=F64)), at(r, row, q, k))
    nan = ir.Constant(F32, math.nan)
    singular = b.load(bad, typ=I1)
    with loop(b, 0, n * k, name="wo") as i:
        x = b.fptrunc(b.load(gep(b, F64, r, i), typ=F64), F32)
        b.store(b.select(singular, nan, x), gep(b, F32, out, i))
