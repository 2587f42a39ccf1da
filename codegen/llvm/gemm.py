"""GEMM kernels: a register-blocked microkernel with fused epilogue and column sums, tiled over threads.

C[M,N] = op(A) @ op(B) with op = transpose or not, all shapes static. The microkernel keeps an
MR x (NV*W) tile of C in NV*MR vector registers (W f32 lanes): per k it loads NV vectors of op(B)'s
row k, broadcasts MR scalars of op(A)'s column k, and issues MR*NV FMAs. op(A) needs no packing
(both layouts give scalar broadcasts); a transposed B is packed, per NV*W-column panel, into a
thread-private scratch [K][NV*W] so the inner loop always reads contiguous vectors. Edge tiles are
specialised at compile time (fewer rows; masked vector loads/stores for a partial column panel).
Loop nest: column panels outermost (the panel stays in L1/L2), row tiles inside, full K in the
microkernel (no C reloads). Threads split the column panels (required when column sums are
fused: each thread owns whole columns) or the row tiles, whichever balances better.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from mlpc.ir import Op, Value
from mlpc.ops.structural import normalize_axes

from codegen.llvm import ewops
from codegen.llvm.irutil import F32, FAST, I1, I32, I64, alloca_entry, const, gep, i64, loop, mem_type

ACC_REGS = {16: 24, 8: 12, 4: 12, 1: 16}  # accumulators that fit the register file with room to spare


@dataclass(frozen=True)
class GemmShape:
    m: int
    n: int
    k: int
    ta: bool
    tb: bool
    lanes: int

    @property
    def nv(self) -> int:
        w = self.lanes
        full = -(-self.n // w)
        cap = 4 if self.m >= 4 else 8
        if w < 16:
            cap = 3 if self.m >= 4 else 6
        return max(1, min(full, cap))

    @property
    def mr(self) -> int:
        return max(1, min(self.m, ACC_REGS[self.lanes] // self.nv))

    @property
    def nr(self) -> int:
        return self.nv * self.lanes

    @property
    def col_tiles(self) -> int:
        return -(-self.n // self.nr)

    @property
    def row_tiles(self) -> int:
        return -(-self.m // self.mr)

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    @property
    def pack_b(self) -> bool:
        """Pack op(B)'s column panel contiguously: always when transposed; otherwise when the panel
        is re-read by enough row tiles to pay for the copy (long strided rows thrash L1/L2 sets)."""
        return self.tb or (self.m >= 4 * self.mr and self.k * self.n >= 32768)

    def scratch_bytes(self, threads: int) -> int:
        return threads * self.k * self.nr * 4 if self.pack_b else 0


def gemm_shape(op: Op, lanes: int) -> GemmShape:
    a, b = op.operands
    ta, tb = bool(op.attrs["transpose_a"]), bool(op.attrs["transpose_b"])
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    return GemmShape(m, n, k, ta, tb, lanes)


def split_axis(s: GemmShape, threads: int, colsums: bool) -> str:
    """'n' (column panels), 'm' (row tiles) or 'none' (one thread)."""
    if threads <= 1 or s.flops < 400_000:
        return "none"
    if colsums:
        return "n" if s.col_tiles >= threads else "none"

    def waste(t: int) -> float:
        return -(-t // threads) * threads / t
    cand = [(waste(s.col_tiles) - (0.05 if s.tb else 0.0), "n"), (waste(s.row_tiles), "m")]
    if s.col_tiles < threads:
        cand = cand[1:]
    if s.row_tiles < threads:
        cand = [c for c in cand if c[1] != "m"]
    if not cand:
        return "none"
    return min(cand)[1]


class GemmEmitter:
    """Emits one gemm kernel body into `b`; `ptr(v)` gives a value's base pointer, `consts` immediates."""

    def __init__(self, b: ir.IRBuilder, ops: list[Op], colsums: list[Op], outputs: list[Value],
                 ptr, consts: dict[Value, float], lanes: int, tid: ir.Value, nt: int,
                 scratch: ir.Value | None, split: str) -> None:
        self.b = b
        self.mm = ops[0]
        self.epi = [o for o in ops[1:] if o not in colsums]
        self.colsums = colsums
        self.outputs = set(outputs)
        self.ptr = ptr
        self.consts = consts
        self.s = gemm_shape(self.mm, lanes)
        self.w = lanes
        self.vty = ir.VectorType(F32, lanes)
        self.tid = tid
        self.nt = nt
        self.scratch = scratch
        self.split = split
        self.values = {r for o in ops for r in o.results}

    # ---- helpers -------------------------------------------------------------------------
    def splat(self, x: ir.Value, ty: ir.Type | None = None) -> ir.Value:
        b = self.b
        ty = ty or self.vty
        if self.w == 1:
            return b.insert_element(ir.Constant(ty, ir.Undefined), x, ir.Constant(I32, 0))
        v = b.insert_element(ir.Constant(ty, ir.Undefined), x, ir.Constant(I32, 0))
        return b.shuffle_vector(v, ir.Constant(ty, ir.Undefined), ir.Constant(ir.VectorType(I32, self.w), [0] * self.w))

    def mask(self, valid: int) -> ir.Constant:
        return ir.Constant(ir.VectorType(I1, self.w), [1 if i < valid else 0 for i in range(self.w)])

    def vload(self, base: ir.Value, index: ir.Value, valid: int, ety: ir.Type = F32) -> ir.Value:
        """Load W elements at base[index]; only the first `valid` lanes if valid < W."""
        b = self.b
        vty = ir.VectorType(ety, self.w)
        p = gep(b, ety, base, index)
        if valid >= self.w:
            v = b.load(p, typ=vty)
            v.align = _bytes(ety)
            return v
        fn = _masked(b.module, "load", vty)
        return b.call(fn, [p, ir.Constant(I32, _bytes(ety)), self.mask(valid), ir.Constant(vty, None)])

    def vstore(self, value: ir.Value, base: ir.Value, index: ir.Value, valid: int) -> None:
        b = self.b
        p = gep(b, value.type.element, base, index)
        if valid >= self.w:
            s = b.store(value, p)
            s.align = _bytes(value.type.element)
            return
        fn = _masked(b.module, "store", value.type)
        b.call(fn, [value, p, ir.Constant(I32, _bytes(value.type.element)), self.mask(valid)])

    # ---- structure -----------------------------------------------------------------------
    def emit(self) -> None:
        b, s = self.b, self.s
        full_cols, tail_cols = divmod(s.n, s.nr)
        ncol_units = s.col_tiles
        lo, hi = (self.range_of(ncol_units) if self.split == "n" else (i64(0), i64(ncol_units)))
        full_hi = self.b.select(b.icmp_signed("<", hi, i64(full_cols)), hi, i64(full_cols))
        with loop(b, lo, full_hi, name="jt") as jt:
            self.column_panel(b.mul(jt, i64(s.nr)), s.nr)
        if tail_cols:
            has_tail = b.icmp_signed("==", hi, i64(ncol_units))
            with b.if_then(has_tail):
                self.column_panel(i64(full_cols * s.nr), tail_cols)

    def range_of(self, units: int) -> tuple[ir.Value, ir.Value]:
        b = self.b
        lo = b.udiv(b.mul(self.tid, i64(units)), i64(self.nt))
        hi = b.udiv(b.mul(b.add(self.tid, i64(1)), i64(units)), i64(self.nt))
        return lo, hi

    def column_panel(self, j0: ir.Value, ncols: int) -> None:
        b, s = self.b, self.s
        if s.pack_b:
            self.pack(j0, ncols)
        for cs in self.colsums:
            out = self.ptr(cs.result)
            for v in range(-(-ncols // self.w)):
                self.vstore(const(self.vty, 0.0), out, b.add(j0, i64(v * self.w)), min(self.w, ncols - v * self.w))
        full_rows, tail_rows = divmod(s.m, s.mr)
        units = s.row_tiles
        lo, hi = (self.range_of(units) if self.split == "m" else (i64(0), i64(units)))
        full_hi = b.select(b.icmp_signed("<", hi, i64(full_rows)), hi, i64(full_rows))
        with loop(b, lo, full_hi, name="it") as it:
            self.micro(b.mul(it, i64(s.mr)), s.mr, j0, ncols)
        if tail_rows:
            with b.if_then(b.icmp_signed("==", hi, i64(units))):
                self.micro(i64(full_rows * s.mr), tail_rows, j0, ncols)

    def pack(self, j0: ir.Value, ncols: int) -> None:
        """scratch[k][c] = op(B)[k, j0 + c] for c < ncols, zero beyond: a contiguous K x NR panel."""
        b, s, w = self.b, self.s, self.w
        assert self.scratch is not None
        buf = gep(b, F32, self.scratch, b.mul(self.tid, i64(s.k * s.nr)))
        src = self.ptr(self.mm.operands[1])
        self.packed = buf
        nv = s.nv
        if not s.tb:
            with loop(b, 0, s.k, name="pk") as k:
                row = b.add(b.mul(k, i64(s.n)), j0)
                for v in range(nv):
                    valid = max(0, min(w, ncols - v * w))
                    x = self.vload(src, b.add(row, i64(v * w)), valid) if valid else const(self.vty, 0.0)
                    self.vstore(x, buf, b.add(b.mul(k, i64(s.nr)), i64(v * w)), w)
            return
        # B is [N, K]: transpose W x W blocks in registers
        kfull = s.k // w * w
        for v in range(nv):
            rows = max(0, min(w, ncols - v * w))
            if kfull and w > 1:
                with loop(b, 0, kfull, step=w, name="pt") as k0:
                    vecs = []
                    for i in range(w):
                        if i < rows:
                            off = b.add(b.mul(b.add(j0, i64(v * w + i)), i64(s.k)), k0)
                            vecs.append(self.vload(src, off, w))
                        else:
                            vecs.append(const(self.vty, 0.0))
                    for i, t in enumerate(_transpose(b, vecs)):
                        self.vstore(t, buf, b.add(b.mul(b.add(k0, i64(i)), i64(s.nr)), i64(v * w)), w)
            with loop(b, 0 if w == 1 else kfull, s.k, name="pr") as k:
                for i in range(w):
                    dst = gep(b, F32, buf, b.add(b.mul(k, i64(s.nr)), i64(v * w + i)))
                    if i < rows:
                        x = b.load(gep(b, F32, src, b.add(b.mul(b.add(j0, i64(v * w + i)), i64(s.k)), k)), typ=F32)
                    else:
                        x = const(F32, 0.0)
                    b.store(x, dst)

    def micro(self, i0: ir.Value, mr: int, j0: ir.Value, ncols: int) -> None:
        b, s, w = self.b, self.s, self.w
        nv = -(-ncols // w)
        valid = [min(w, ncols - v * w) for v in range(nv)]
        acc = [[alloca_entry(b, self.vty, f"acc{r}_{v}") for v in range(nv)] for r in range(mr)]
        for r in range(mr):
            for v in range(nv):
                b.store(const(self.vty, 0.0), acc[r][v])
        a = self.ptr(self.mm.operands[0])
        bsrc = self.ptr(self.mm.operands[1])
        fma = _fmuladd(b.module, self.vty)
        with loop(b, 0, s.k, name="k") as k:
            if s.pack_b:
                brow = b.mul(k, i64(s.nr))
                bv = [self.vload(self.packed, b.add(brow, i64(v * w)), w) for v in range(nv)]
            else:
                brow = b.add(b.mul(k, i64(s.n)), j0)
                bv = [self.vload(bsrc, b.add(brow, i64(v * w)), valid[v]) for v in range(nv)]
            for r in range(mr):
                if s.ta:
                    idx = b.add(b.mul(k, i64(s.m)), b.add(i0, i64(r)))
                else:
                    idx = b.add(b.mul(b.add(i0, i64(r)), i64(s.k)), k)
                x = b.load(gep(b, F32, a, idx), typ=F32)
                xs = self.splat(x)
                for v in range(nv):
                    cur = b.load(acc[r][v], typ=self.vty)
                    b.store(b.call(fma, [xs, bv[v], cur]), acc[r][v])
        tile = {self.mm.result: [[b.load(acc[r][v], typ=self.vty) for v in range(nv)] for r in range(mr)]}
        self.epilogue(tile, i0, mr, j0, valid)

    # ---- epilogue ------------------------------------------------------------------------
    def operand(self, v: Value, tile: dict, i0: ir.Value, mr: int, j0: ir.Value, valid: list[int]) -> list[list[ir.Value]]:
        b, s, w = self.b, self.s, self.w
        nv = len(valid)
        if v in tile:
            return tile[v]
        ety = mem_type(v.dtype)
        vty = ir.VectorType(ety if v.dtype.value != "i1" else I1, w)
        if v in self.consts:
            c = const(ir.VectorType(F32, w), self.consts[v])
            return [[c] * nv for _ in range(mr)]
        base = self.ptr(v)

        def fix(x: ir.Value) -> ir.Value:
            return b.trunc(x, vty) if v.dtype.value == "i1" else x
        shape = v.shape
        if shape == (s.m, s.n):
            return [[fix(self.vload(base, b.add(b.mul(b.add(i0, i64(r)), i64(s.n)), b.add(j0, i64(vv * w))),
                                    valid[vv], ety)) for vv in range(nv)] for r in range(mr)]
        if shape in ((s.n,), (1, s.n)):
            row = [fix(self.vload(base, b.add(j0, i64(vv * w)), valid[vv], ety)) for vv in range(nv)]
            return [row for _ in range(mr)]
        if shape == (s.m, 1):
            out = []
            for r in range(mr):
                x = b.load(gep(b, ety, base, b.add(i0, i64(r))), typ=ety)
                x = b.trunc(x, I1) if v.dtype.value == "i1" else x
                out.append([self.splat(x, vty)] * nv)
            return out
        x = b.load(gep(b, ety, base, i64(0)), typ=ety)
        x = b.trunc(x, I1) if v.dtype.value == "i1" else x
        sp = self.splat(x, vty)
        return [[sp] * nv for _ in range(mr)]

    def epilogue(self, tile: dict, i0: ir.Value, mr: int, j0: ir.Value, valid: list[int]) -> None:
        b, s, w = self.b, self.s, self.w
        nv = len(valid)
        for op in self.epi:
            args = [self.operand(v, tile, i0, mr, j0, valid) for v in op.operands]
            dts = [v.dtype for v in op.operands]
            tile[op.result] = [[ewops.emit(b, op.name, op.attrs, [a[r][vv] for a in args], dts, op.result.dtype, w)
                                for vv in range(nv)] for r in range(mr)]
        for val, t in tile.items():
            if val in self.outputs:
                base = self.ptr(val)
                for r in range(mr):
                    for vv in range(nv):
                        idx = b.add(b.mul(b.add(i0, i64(r)), i64(s.n)), b.add(j0, i64(vv * w)))
                        self.vstore(t[r][vv], base, idx, valid[vv])
        for cs in self.colsums:
            t = tile[cs.operands[0]]
            scale = 1.0
            if cs.name == "mean":
                normalize_axes(cs.attrs["axes"], 2)
                scale = 1.0 / s.m
            out = self.ptr(cs.result)
            for vv in range(nv):
                acc = t[0][vv]
                for r in range(1, mr):
                    acc = b.fadd(acc, t[r][vv], flags=FAST)
                if scale != 1.0:
                    acc = b.fmul(acc, const(self.vty, scale), flags=FAST)
                idx = b.add(j0, i64(vv * w))
                old = self.vload(out, idx, valid[vv])
                self.vstore(b.fadd(old, acc, flags=FAST), out, idx, valid[vv])


def _transpose(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """Transpose a W x W block held as W vectors: log2(W) stages of two-input shuffles that swap
    the off-diagonal d x d blocks (d = W/2, ..., 1)."""
    w = len(rows)
    rows = list(rows)
    d = w // 2
    while d >= 1:
        lo_mask = ir.Constant(ir.VectorType(I32, w), [c if c & d == 0 else w + c - d for c in range(w)])
        hi_mask = ir.Constant(ir.VectorType(I32, w), [c + d if c & d == 0 else w + c for c in range(w)])
        out = list(rows)
        for i in range(w):
            if i & d:
                continue
            j = i + d
            out[i] = b.shuffle_vector(rows[i], rows[j], lo_mask)
            out[j] = b.shuffle_vector(rows[i], rows[j], hi_mask)
        rows = out
        d //= 2
    return rows


def _bytes(t: ir.Type) -> int:
    return 4 if t == F32 else t.width // 8


def _masked(mod: ir.Module, kind: str, vty: ir.VectorType) -> ir.Function:
    suffix = f"v{vty.count}{'f32' if vty.element == F32 else 'i' + str(vty.element.width)}"
    name = f"llvm.masked.{kind}.{suffix}.p0"
    fn = mod.globals.get(name)
    if fn is None:
        mty = ir.VectorType(I1, vty.count)
        if kind == "load":
            fty = ir.FunctionType(vty, [ir.PointerType(), I32, mty, vty])
        else:
            fty = ir.FunctionType(ir.VoidType(), [vty, ir.PointerType(), I32, mty])
        fn = ir.Function(mod, fty, name)
    return fn


def _fmuladd(mod: ir.Module, vty: ir.VectorType) -> ir.Function:
    name = f"llvm.fmuladd.v{vty.count}f32"
    fn = mod.globals.get(name)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(vty, [vty, vty, vty]), name)
    return fn


__all__ = ["GemmEmitter", "GemmShape", "gemm_shape", "split_axis", "I64"]
