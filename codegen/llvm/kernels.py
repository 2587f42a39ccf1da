"""Non-gemm kernels: elementwise chains, reductions, row-wise softmax family, fused softmax
cross-entropy forward+backward, MSE, transpose, fill and the all-parameter optimizer update.

They are written as scalar loops over static shapes with `noalias` buffers and fast-math flags
(no nnan/ninf), which LLVM's loop vectorizer turns into host-width vector code."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

from llvmlite import ir

from codegen.llvm import ewops, vecmath
from codegen.llvm.irutil import (
    CONTRACT,
    F32,
    F64,
    I1,
    I32,
    I64,
    REDUCE,
    alloca_entry,
    const,
    elem_type,
    gep,
    i64,
    intrinsic,
    load_elem,
    loop,
    store_elem,
)
from mlpc.errors import MlpcError
from mlpc.ir import Op, Value
from mlpc.ops.optim import StepScalar, UpdateRule, split_operands, update_rule
from mlpc.ops.structural import normalize_axes
from mlpc.types import DType

THREAD_MIN_ELEMS = 1 << 16


@dataclass
class KCtx:
    """What a kernel body needs: builder, buffer pointers, inlined constants, thread id and count."""

    b: ir.IRBuilder
    ptr: Callable[[Value], ir.Value]
    consts: dict[Value, float]
    tid: ir.Value
    nt: int
    scratch: ir.Value | None
    lanes: int
    shared: dict[Any, ir.Function] | None = None  # the module's shared parts (sharing.py); None: inline them

    def read(self, v: Value, index: ir.Value) -> ir.Value:
        if v in self.consts:
            return const(elem_type(v.dtype), _cval(v.dtype, self.consts[v]))
        return load_elem(self.b, v.dtype, self.ptr(v), index)

    def span(self, n: int) -> tuple[ir.Value, ir.Value]:
        """This thread's part [lo, hi) of range(n), split in multiples of 16 elements."""
        if self.nt <= 1:
            return i64(0), i64(n)
        b = self.b
        chunks = -(-n // 16)
        lo = b.mul(b.udiv(b.mul(self.tid, i64(chunks)), i64(self.nt)), i64(16))
        hi = b.mul(b.udiv(b.mul(b.add(self.tid, i64(1)), i64(chunks)), i64(self.nt)), i64(16))
        lo = b.select(b.icmp_signed("<", lo, i64(n)), lo, i64(n))
        hi = b.select(b.icmp_signed("<", hi, i64(n)), hi, i64(n))
        return lo, hi


def _cval(dt: DType, v: float) -> float | int:
    if dt == DType.f32:
        return v
    return int(v)


def strides(shape: tuple[int, ...]) -> list[int]:
    out = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        out[d] = out[d + 1] * shape[d + 1]
    return out


def broadcast_strides(src: tuple[int, ...], dst: tuple[int, ...]) -> list[int]:
    """Element strides to read `src` broadcast to `dst` (0 along broadcast dims)."""
    st = strides(src)
    lead = len(dst) - len(src)
    out = []
    for d in range(len(dst)):
        s = d - lead
        out.append(0 if s < 0 or src[s] == 1 and dst[d] != 1 else st[s])
    return out


# ---- elementwise ---------------------------------------------------------------------------------

def elementwise_threaded(ops: list[Op], nt: int) -> bool:
    return nt > 1 and ops[-1].results[0].type.size >= THREAD_MIN_ELEMS


def emit_elementwise(c: KCtx, ops: list[Op], outputs: list[Value]) -> None:
    b = c.b
    shape = ops[0].results[0].shape
    size = ops[0].results[0].type.size
    inside = {r for o in ops for r in o.results}
    ext = [v for o in ops for v in o.operands if v not in inside and v not in c.consts]
    flat_reads = {o.operands[0] for o in ops if o.name == "reshape"}
    flat = all(v in flat_reads or v.shape == shape or v.type.size == 1 for v in ext)

    def body(env_index: Callable[[Value], ir.Value], out_index: ir.Value) -> None:
        env: dict[Value, ir.Value] = {}
        for o in ops:
            args = [env[v] if v in env else c.read(v, env_index(v)) for v in o.operands]
            env[o.results[0]] = ewops.emit(b, o.name, o.attrs, args, [v.dtype for v in o.operands],
                                           o.results[0].dtype)
        for v in outputs:
            store_elem(b, v.dtype, env[v], c.ptr(v), out_index)

    if flat or len(shape) <= 1:
        lo, hi = c.span(size)
        with loop(b, lo, hi, name="e") as i:
            body(lambda v: i if (v in flat_reads or v.shape == shape or len(shape) <= 1 and v.type.size == size)
                 else i64(0), i)
        return
    outer_shape, inner = shape[:-1], shape[-1]
    n_outer = max(1, math.prod(outer_shape))
    bst = {v: broadcast_strides(v.shape, shape) for v in ext}
    if c.nt > 1:
        lo = b.udiv(b.mul(c.tid, i64(n_outer)), i64(c.nt))
        hi = b.udiv(b.mul(b.add(c.tid, i64(1)), i64(n_outer)), i64(c.nt))
    else:
        lo, hi = i64(0), i64(n_outer)
    with loop(b, lo, hi, name="o") as o:
        base: dict[Value, ir.Value] = {}
        for v in ext:
            off: ir.Value = i64(0)
            rem = o
            for d in range(len(outer_shape) - 1, -1, -1):
                idx = b.urem(rem, i64(outer_shape[d])) if d > 0 else rem
                rem = b.udiv(rem, i64(outer_shape[d])) if d > 0 else rem
                if bst[v][d]:
                    off = b.add(off, b.mul(idx, i64(bst[v][d])))
            base[v] = off
        row = b.mul(o, i64(inner))
        with loop(b, 0, inner, name="e") as j:
            def index(v: Value) -> ir.Value:
                if v in flat_reads:
                    return b.add(row, j)
                if v not in bst:  # an inlined constant: no memory read
                    return i64(0)
                s = bst[v][-1]
                return b.add(base[v], j) if s else base[v]
            body(index, b.add(row, j))


# ---- reductions ----------------------------------------------------------------------------------

def emit_reduce(c: KCtx, op: Op) -> None:
    b = c.b
    x = op.operands[0]
    shape = x.shape
    axes = normalize_axes(op.attrs["axes"], len(shape))
    out = c.ptr(op.result)
    kept = [d for d in range(len(shape)) if d not in axes]
    n_out = max(1, math.prod(shape[d] for d in kept))
    init = -math.inf if op.name == "max" else 0.0
    with loop(b, 0, n_out, name="z") as i:
        b.store(const(F32, init), gep(b, F32, out, i))
    out_st = strides(tuple(shape[d] for d in kept))
    ostride = {d: out_st[n] for n, d in enumerate(kept)}
    src = c.ptr(x)
    xst = strides(shape)

    def nest(d: int, in_off: ir.Value, out_off: ir.Value) -> None:
        if d == len(shape):
            val = b.load(gep(b, F32, src, in_off), typ=F32)
            p = gep(b, F32, out, out_off)
            cur = b.load(p, typ=F32)
            new = ewops._max(b, cur, val) if op.name == "max" else b.fadd(cur, val, flags=REDUCE)
            b.store(new, p)
            return
        with loop(b, 0, shape[d], name=f"r{d}") as i:
            io = b.add(in_off, b.mul(i, i64(xst[d])))
            oo = b.add(out_off, b.mul(i, i64(ostride[d]))) if d in ostride else out_off
            nest(d + 1, io, oo)
    if shape:
        nest(0, i64(0), i64(0))
    else:
        b.store(b.load(gep(b, F32, src, i64(0)), typ=F32), gep(b, F32, out, i64(0)))
    if op.name == "mean":
        count = max(1, x.type.size // n_out)
        with loop(b, 0, n_out, name="s") as i:
            p = gep(b, F32, out, i)
            b.store(b.fdiv(b.load(p, typ=F32), const(F32, float(count))), p)


def emit_mse(c: KCtx, op: Op) -> None:
    b = c.b
    p, t = op.operands
    acc = alloca_entry(b, F32, "acc")
    b.store(const(F32, 0.0), acc)
    with loop(b, 0, p.type.size, name="e") as i:
        d = b.fsub(c.read(p, i), c.read(t, i), flags=CONTRACT)
        b.store(b.fadd(b.load(acc, typ=F32), b.fmul(d, d, flags=REDUCE), flags=REDUCE), acc)
    res = b.fdiv(b.load(acc, typ=F32), const(F32, float(max(p.type.size, 1))))
    b.store(res, c.ptr(op.result))


# ---- row-wise: softmax, log_softmax, one_hot ---------------------------------------------------------

def _row_max_sum(c: KCtx, src: ir.Value, row: ir.Value, cols: int) -> tuple[ir.Value, ir.Value]:
    """(max, sum of exp(x - max)) of one row."""
    b = c.b
    mx = alloca_entry(b, F32, "mx")
    b.store(const(F32, -math.inf), mx)
    with loop(b, 0, cols, name="cm") as j:
        x = b.load(gep(b, F32, src, b.add(row, j)), typ=F32)
        b.store(ewops._max(b, b.load(mx, typ=F32), x), mx)
    m = b.load(mx, typ=F32)
    sm = alloca_entry(b, F32, "sm")
    b.store(const(F32, 0.0), sm)
    with loop(b, 0, cols, name="cs") as j:
        x = b.load(gep(b, F32, src, b.add(row, j)), typ=F32)
        b.store(b.fadd(b.load(sm, typ=F32), vecmath.fexp(b, b.fsub(x, m)), flags=REDUCE), sm)
    return m, b.load(sm, typ=F32)


def emit_rowwise(c: KCtx, op: Op) -> None:
    b = c.b
    out = c.ptr(op.result)
    if op.name == "one_hot":
        labels = op.operands[0]
        ncls = int(op.attrs["num_classes"])
        dt = op.result.dtype
        zero = const(elem_type(dt), 0 if dt != DType.f32 else 0.0)
        one = const(elem_type(dt), 1 if dt != DType.f32 else 1.0)
        if dt == DType.i1:
            zero, one = ir.Constant(I1, 0), ir.Constant(I1, 1)
        with loop(b, 0, labels.type.size, name="r") as r:
            lab = b.sext(c.read(labels, r), I64) if labels.dtype == DType.i32 else c.read(labels, r)
            with loop(b, 0, ncls, name="c") as j:
                store_elem(b, dt, b.select(b.icmp_signed("==", j, lab), one, zero), out, b.add(b.mul(r, i64(ncls)), j))
        return
    x = op.operands[0]
    cols = x.shape[-1]
    rows = x.type.size // max(cols, 1)
    src = c.ptr(x)
    with loop(b, 0, rows, name="r") as r:
        row = b.mul(r, i64(cols))
        m, s = _row_max_sum(c, src, row, cols)
        if op.name == "softmax":
            inv = b.fdiv(const(F32, 1.0), s)
            with loop(b, 0, cols, name="cw") as j:
                xv = b.load(gep(b, F32, src, b.add(row, j)), typ=F32)
                b.store(b.fmul(vecmath.fexp(b, b.fsub(xv, m)), inv, flags=CONTRACT), gep(b, F32, out, b.add(row, j)))
        else:
            shift = b.fadd(m, vecmath.flog(b, s))
            with loop(b, 0, cols, name="cw") as j:
                xv = b.load(gep(b, F32, src, b.add(row, j)), typ=F32)
                b.store(b.fsub(xv, shift), gep(b, F32, out, b.add(row, j)))


def emit_softmax_ce(c: KCtx, ops: list[Op], colsums: list[Op]) -> None:
    """Loss and/or gradient of softmax cross-entropy (and the gradient's column sums) in one pass."""
    b = c.b
    fwd = next((o for o in ops if o.name == "softmax_cross_entropy"), None)
    bwd = next((o for o in ops if o.name == "softmax_cross_entropy_grad"), None)
    first = fwd or bwd
    assert first is not None
    logits, labels = first.operands[0], first.operands[1]
    rows, cols = logits.shape
    src = c.ptr(logits)
    for cs in colsums:
        with loop(b, 0, cols, name="z") as j:
            b.store(const(F32, 0.0), gep(b, F32, c.ptr(cs.result), j))
    loss = alloca_entry(b, F32, "loss")
    b.store(const(F32, 0.0), loss)
    scale = None
    if bwd is not None:
        scale = b.fdiv(c.read(bwd.operands[2], i64(0)), const(F32, float(rows)))
    with loop(b, 0, rows, name="r") as r:
        row = b.mul(r, i64(cols))
        m, s = _row_max_sum(c, src, row, cols)
        lab = b.sext(c.read(labels, r), I64)
        ok = b.and_(b.icmp_signed(">=", lab, i64(0)), b.icmp_signed("<", lab, i64(cols)))
        safe = b.select(ok, lab, i64(0))
        if fwd is not None:
            xl = b.load(gep(b, F32, src, b.add(row, safe)), typ=F32)
            li = b.fsub(b.fadd(m, vecmath.flog(b, s)), xl)
            b.store(b.fadd(b.load(loss, typ=F32), li), loss)
        if bwd is not None:
            assert scale is not None
            inv = b.fdiv(const(F32, 1.0), s)
            out = c.ptr(bwd.result)
            with loop(b, 0, cols, name="cg") as j:
                xv = b.load(gep(b, F32, src, b.add(row, j)), typ=F32)
                p = b.fmul(vecmath.fexp(b, b.fsub(xv, m)), inv, flags=CONTRACT)
                hot = b.uitofp(b.icmp_signed("==", j, lab), F32)
                d = b.fmul(b.fsub(p, hot), scale)
                b.store(d, gep(b, F32, out, b.add(row, j)))
                for cs in colsums:
                    q = gep(b, F32, c.ptr(cs.result), j)
                    add = d if cs.name == "sum" else b.fmul(d, const(F32, 1.0 / rows))
                    b.store(b.fadd(b.load(q, typ=F32), add, flags=REDUCE), q)
    if fwd is not None:
        b.store(b.fdiv(b.load(loss, typ=F32), const(F32, float(rows))), c.ptr(fwd.result))


# ---- shape ops and constants ----------------------------------------------------------------------

def emit_transpose(c: KCtx, op: Op) -> None:
    b = c.b
    x = op.operands[0]
    perm = tuple(op.attrs["perm"]) or tuple(reversed(range(len(x.shape))))
    oshape = op.result.shape
    xst = strides(x.shape)
    ost = strides(oshape)
    src, dst = c.ptr(x), c.ptr(op.result)
    dt = x.dtype

    def nest(d: int, io: ir.Value, oo: ir.Value) -> None:
        if d == len(oshape):
            store_elem(b, dt, load_elem(b, dt, src, io), dst, oo)
            return
        with loop(b, 0, oshape[d], name=f"t{d}") as i:
            nest(d + 1, b.add(io, b.mul(i, i64(xst[perm[d]]))), b.add(oo, b.mul(i, i64(ost[d]))))
    nest(0, i64(0), i64(0))


def emit_fill(c: KCtx, op: Op) -> None:
    b = c.b
    dt = op.result.dtype
    v = const(elem_type(dt), _cval(dt, float(op.attrs["value"]))) if dt != DType.i1 else \
        ir.Constant(I1, int(bool(op.attrs["value"])))
    with loop(b, 0, op.result.type.size, name="f") as i:
        store_elem(b, dt, v, c.ptr(op.result), i)


# ---- optimizer -----------------------------------------------------------------------------------

def optimizer_threaded(ops: list[Op], nt: int) -> bool:
    return nt > 1 and sum(o.operands[0].type.size for o in ops) >= THREAD_MIN_ELEMS


def _bias_correction(c: KCtx, t: Value, beta: ir.Value) -> ir.Value:
    """f32(1 - beta**(t+1)) for a runtime f32 beta, computed in double like the NumPy reference."""
    b = c.b
    step = b.sitofp(b.add(c.read(t, i64(0)), ir.Constant(I32, 1)), F64)
    pw = intrinsic(b, "pow", F64, [b.fpext(beta, F64), step])
    return b.fptrunc(b.fsub(ir.Constant(F64, 1.0), pw), F32)


def _prelude(c: KCtx, op: Op, rule: UpdateRule) -> list[ir.Value]:
    """Per-op scalars computed once per step, in the rule's argument order after the tensors: the
    runtime hyperparameters (read from their f32[] operands), then the rule's step scalars."""
    _, t, hyper = split_operands(op.name, op.attrs, op.operands)
    hv = {n: c.read(v, i64(0)) for n, v in hyper.items()}
    return [hv[n] for n in rule.hypers] + [_step_scalar(c, t, sc, hv) for sc in rule.scalars]


def emit_optimizer(c: KCtx, ops: list[Op], outputs: list[Value]) -> None:
    """Every update op in turn, each a call to a loop shared by the updates of equal shape and rule."""
    from codegen.llvm.sharing import call_shared

    # last parameter first: the first layer's weights (read first by the next forward) end the
    # step in cache instead of being evicted by the other parameters' moments
    grads = {o.result: o for o in ops if o.name == "matmul"}  # rank-K weight gradients, recomputed here
    for op in reversed([o for o in ops if o.name != "matmul"]):
        mm = grads.get(op.operands[1])
        call_shared(c, "update", [op] if mm is None else [mm, op], outputs,
                    functools.partial(_emit_update_loop, op=op, mm=mm, outputs=outputs))


def _emit_update_loop(c: KCtx, op: Op, mm: Op | None, outputs: list[Value]) -> None:
    """One update op over its elements; a rank-K gradient `mm` (x^T dy) is recomputed per element."""
    b = c.b
    n = op.operands[0].type.size
    rule = update_rule(op.name, op.attrs)
    update = functools.partial(_emit_update, c, op, rule, _prelude(c, op, rule), outputs)
    if mm is None:
        lo, hi = c.span(n)
        with loop(b, lo, hi, name="u") as i:
            update(i, None)
        return
    x, dy = mm.operands  # g = x^T dy: x [K, M], dy [K, N]
    kk, rows = x.shape
    cols = dy.shape[1]
    lo, hi = c.span(rows)
    with loop(b, lo, hi, name="ur") as r:
        xs = [c.read(x, b.add(i64(q * rows), r)) for q in range(kk)]
        with loop(b, 0, cols, name="uc") as col:
            g = None
            for q in range(kk):
                term = b.fmul(xs[q], c.read(dy, b.add(i64(q * cols), col)), flags=("contract",))
                g = term if g is None else b.fadd(g, term, flags=("contract",))
            update(b.add(b.mul(r, i64(cols)), col), g)


def _step_scalar(c: KCtx, t: Value, s: StepScalar, hyper: dict[str, ir.Value]) -> ir.Value:
    """A per-step scalar of an update rule, computed once before the element loop."""
    if s.kind == "first_step":
        return c.b.icmp_signed("==", c.read(t, i64(0)), ir.Constant(I32, 0))
    if s.kind == "bias_correction":
        return _bias_correction(c, t, hyper[s.beta])
    raise MlpcError(f"llvm backend: unknown step scalar {s.kind!r}")


def _emit_update(c: KCtx, op: Op, rule: UpdateRule, pre: list[ir.Value], outputs: list[Value], i: ir.Value,
                 g: ir.Value | None) -> None:
    """One element of an update op at index i (g: the gradient if computed in registers): the op's
    update rule (mlpc/ops/optim.py) rendered with contractible arithmetic."""
    b = c.b
    tensors, _, _ = split_operands(op.name, op.attrs, op.operands)
    vals = [g if (j == 1 and g is not None) else c.read(v, i) for j, v in enumerate(tensors)]
    args = vals + pre
    dts = ([DType.f32] * (len(vals) + len(rule.hypers))
           + [DType.i1 if s.kind == "first_step" else DType.f32 for s in rule.scalars])
    for r, e in zip(op.results, rule.outputs):
        if r in outputs:
            v = ewops.render(b, e, args, dts, DType.f32, 1, ("contract",), op.name)
            b.store(v, gep(b, F32, c.ptr(r), i))
