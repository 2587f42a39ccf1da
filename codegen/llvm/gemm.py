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

from codegen.llvm import ewops
from codegen.llvm.irutil import CONTRACT, F32, I1, I32, I64, REDUCE, alloca_entry, const, gep, i64, loop, mem_type
from mlpc.ir import Op, Value

ACC_REGS = {16: 24, 8: 12, 4: 12, 1: 16}  # accumulators that fit the register file with room to spare


@dataclass(frozen=True)
class GemmShape:
    m: int
    n: int
    k: int
    ta: bool
    tb: bool
    lanes: int
    bf16: bool = False  # bf16 operands (codegen/llvm/gemm_bf16.py): both always packed, into k-pairs

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
        # bf16 on 16 lanes: 20 accumulators (VDPBF16PS takes no folded broadcast; 24 spilled in the k loop)
        regs = ACC_REGS[self.lanes] - (4 if self.bf16 and self.lanes == 16 else 0)
        return max(1, min(self.m, regs // self.nv))

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
    def dot(self) -> bool:
        """A @ B^T with few rows: dot products along K (both operands contiguous in K) beat
        transposing all of B into panels, whose cost is only amortized over M rows."""
        return self.tb and not self.ta and self.m <= 32 and self.k >= 2 * self.lanes and not self.bf16

    @property
    def dot_block(self) -> tuple[int, int]:
        return (1, 8) if self.m == 1 else (min(self.m, 4), 4)

    @property
    def pack_b(self) -> bool:
        """Pack op(B)'s column panel contiguously: always when transposed; otherwise when the panel
        is re-read by enough row tiles to pay for the copy (long strided rows thrash L1/L2 sets)."""
        return self.bf16 or self.tb or (self.m >= 4 * self.mr and self.k * self.n >= 32768)

    @property
    def pack_a(self) -> bool:
        """A transposed ([K, M]) and large: pack op(A) into [row tile][K][MR] so the microkernel
        streams it (otherwise each tile walks K cache lines at stride M and reuses little of each)."""
        return self.bf16 or (self.ta and not self.dot and self.m >= 4 * self.mr and self.k >= 64)

    @property
    def a_panel(self) -> int:
        """Elements of packed op(A) per thread (bf16: M x ceil(K/2) i32 pairs)."""
        if self.bf16:
            k2 = -(-self.k // 2)
            return k2 * padded_stride(self.m) if self.ta else self.m * padded_stride(k2)
        return self.row_tiles * self.mr * self.k

    def scratch_bytes(self, threads: int) -> int:
        if self.bf16:
            return threads * 4 * (-(-self.k // 2) * self.nr + self.a_panel)
        b = self.k * self.nr * 4 if self.pack_b and not self.dot else 0
        a = self.a_panel * 4 if self.pack_a else 0
        return threads * (b + a)


def padded_stride(n: int) -> int:
    """A packed panel's row stride for rows of n elements: padded off multiples of 16 (64 bytes) so the rows a
    microkernel streams together do not share L1 sets (bf16 K = 1024 ran 1.4x slower than K = 784 unpadded)."""
    return n + 16 if n % 16 == 0 else n


def gemm_shape(op: Op, lanes: int, bf16: bool = False) -> GemmShape:
    a, b = op.operands
    ta, tb = bool(op.attrs["transpose_a"]), bool(op.attrs["transpose_b"])
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    return GemmShape(m, n, k, ta, tb, lanes, bf16)


PACK_COST = 32  # flop-equivalents per packed element (a scalar copy vs. 2 x 16-lane FMAs per cycle)


def split_axis(s: GemmShape, threads: int, colsums: bool) -> str:
    """'n' (column panels), 'm' (row tiles) or 'none' (one thread): the split with the least work on
    the busiest thread, counting packing that every thread repeats (A panels when splitting columns,
    B panels when splitting rows)."""
    if threads <= 1 or s.flops < 400_000:
        return "none"
    if s.dot:
        return "n" if -(-s.n // s.dot_block[1]) >= threads else "none"
    if colsums:
        return "n" if s.col_tiles >= threads else "none"

    def cost(axis: str) -> float:
        tiles = s.col_tiles if axis == "n" else s.row_tiles
        if tiles < threads:
            return float("inf")
        busiest = -(-tiles // threads) / tiles * s.flops
        repeated = s.a_panel if (axis == "n" and s.pack_a) else 0
        repeated += s.k * s.col_tiles * s.nr if (axis == "m" and s.pack_b) else 0
        return busiest + PACK_COST * repeated
    best = min(("n", "m"), key=cost)
    return best if cost(best) != float("inf") else "none"


class GemmEmitter:
    """Emits one gemm kernel body into `b`; `ptr(v)` gives a value's base pointer, `consts` immediates.

    One copy of the microkernel serves every tile: edge tiles clamp their extra rows onto a valid
    row (results discarded: those rows are not stored) and mask lanes past the last column."""

    def __init__(self, b: ir.IRBuilder, ops: list[Op], colsums: list[Op], outputs: list[Value],
                 ptr, consts: dict[Value, float], lanes: int, tid: ir.Value, nt: int,
                 scratch: ir.Value | None, split: str, bf16: bool = False) -> None:
        self.b = b
        self.mm = ops[0]
        self.epi = [o for o in ops[1:] if o not in colsums]
        self.colsums = colsums
        self.outputs = set(outputs)
        self.ptr = ptr
        self.consts = consts
        self.s = gemm_shape(self.mm, lanes, bf16)
        self.w = lanes
        self.vty = ir.VectorType(F32, lanes)
        self.tid = tid
        self.nt = nt
        self.scratch = scratch
        self.split = split
        self.iota = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))

    # ---- helpers -------------------------------------------------------------------------
    def splat(self, x: ir.Value, ty: ir.Type | None = None) -> ir.Value:
        b = self.b
        ty = ty or ir.VectorType(x.type, self.w)
        v = b.insert_element(ir.Constant(ty, ir.Undefined), x, ir.Constant(I32, 0))
        if self.w == 1:
            return v
        return b.shuffle_vector(v, ir.Constant(ty, ir.Undefined), ir.Constant(ir.VectorType(I32, self.w), [0] * self.w))

    def lane_mask(self, valid: ir.Value) -> ir.Value:
        """Lanes [0, valid) on (valid may be <= 0 or >= W)."""
        return self.b.icmp_signed("<", self.iota, self.splat(valid))

    def vload(self, base: ir.Value, index: ir.Value, mask: ir.Value | None, ety: ir.Type = F32) -> ir.Value:
        b = self.b
        vty = ir.VectorType(ety, self.w)
        p = gep(b, ety, base, index)
        if mask is None:
            v = b.load(p, typ=vty)
            v.align = _bytes(ety)
            return v
        fn = _masked(b.module, "load", vty)
        return b.call(fn, [p, ir.Constant(I32, _bytes(ety)), mask, ir.Constant(vty, None)])

    def vstore(self, value: ir.Value, base: ir.Value, index: ir.Value, mask: ir.Value | None) -> None:
        b = self.b
        p = gep(b, value.type.element, base, index)
        if mask is None:
            st = b.store(value, p)
            st.align = _bytes(value.type.element)
            return
        fn = _masked(b.module, "store", value.type)
        b.call(fn, [value, p, ir.Constant(I32, _bytes(value.type.element)), mask])

    def imin(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    # ---- structure -----------------------------------------------------------------------
    def emit(self) -> None:
        b, s = self.b, self.s
        if s.dot:
            self.emit_dot()
            return
        if s.pack_a:
            self.pack_a()
        lo, hi = self.range_of(s.col_tiles) if self.split == "n" else (i64(0), i64(s.col_tiles))
        with loop(b, lo, hi, name="jt") as jt:
            j0 = b.mul(jt, i64(s.nr))
            cv = self.imin(i64(s.nr), b.sub(i64(s.n), j0))
            self.column_panel(j0, cv)

    def range_of(self, units: int) -> tuple[ir.Value, ir.Value]:
        b = self.b
        lo = b.udiv(b.mul(self.tid, i64(units)), i64(self.nt))
        hi = b.udiv(b.mul(b.add(self.tid, i64(1)), i64(units)), i64(self.nt))
        return lo, hi

    def column_panel(self, j0: ir.Value, cv: ir.Value) -> None:
        b, s, w = self.b, self.s, self.w
        masks = [self.lane_mask(b.sub(cv, i64(v * w))) for v in range(s.nv)]
        if s.pack_b:
            self.pack(j0, cv)
        for cs in self.colsums:
            out = self.ptr(cs.result)
            for v in range(s.nv):
                self.vstore(const(self.vty, 0.0), out, b.add(j0, i64(v * w)), masks[v])
        lo, hi = self.range_of(s.row_tiles) if self.split == "m" else (i64(0), i64(s.row_tiles))
        with loop(b, lo, hi, name="it") as it:
            i0 = b.mul(it, i64(s.mr))
            rv = self.imin(i64(s.mr), b.sub(i64(s.m), i0))
            self.micro(i0, rv, j0, masks)

    def pack_a(self) -> None:
        """apack[(it*K + k)*MR + r] = op(A)[it*MR + r, k] (rows past M clamped) for this thread's tiles."""
        b, s = self.b, self.s
        assert self.scratch is not None
        per_thread = s.k * s.nr + s.a_panel if s.pack_b else s.a_panel
        base = b.mul(self.tid, i64(per_thread))
        if s.pack_b:
            base = b.add(base, i64(s.k * s.nr))
        self.apacked = gep(b, F32, self.scratch, base)
        src = self.ptr(self.mm.operands[0])
        lo, hi = self.range_of(s.row_tiles) if self.split == "m" else (i64(0), i64(s.row_tiles))
        with loop(b, lo, hi, name="pa") as it:
            i0 = b.mul(it, i64(s.mr))
            rows = [self.imin(b.add(i0, i64(r)), i64(s.m - 1)) for r in range(s.mr)]
            out0 = b.mul(it, i64(s.k * s.mr))
            with loop(b, 0, s.k, name="pak") as k:
                row = b.mul(k, i64(s.m))
                dst = b.add(out0, b.mul(k, i64(s.mr)))
                for r in range(s.mr):
                    x = b.load(gep(b, F32, src, b.add(row, rows[r])), typ=F32)
                    b.store(x, gep(b, F32, self.apacked, b.add(dst, i64(r))))

    def pack(self, j0: ir.Value, cv: ir.Value) -> None:
        """scratch[k][c] = op(B)[k, j0 + c] for c < cv, zero beyond: a contiguous K x NR panel."""
        b, s, w = self.b, self.s, self.w
        assert self.scratch is not None
        per_thread = s.k * s.nr + (s.a_panel if s.pack_a else 0)
        buf = gep(b, F32, self.scratch, b.mul(self.tid, i64(per_thread)))
        src = self.ptr(self.mm.operands[1])
        self.packed = buf
        if not s.tb:
            masks = [self.lane_mask(b.sub(cv, i64(v * w))) for v in range(s.nv)]
            with loop(b, 0, s.k, name="pk") as k:
                row = b.add(b.mul(k, i64(s.n)), j0)
                for v in range(s.nv):
                    x = self.vload(src, b.add(row, i64(v * w)), masks[v])
                    self.vstore(x, buf, b.add(b.mul(k, i64(s.nr)), i64(v * w)), None)
            return
        # B is [N, K]: W x W blocks transposed in registers; columns past cv read row cv-1, then zeroed
        kfull = s.k // w * w if w > 1 else 0
        zero = const(self.vty, 0.0)
        with loop(b, 0, s.nv, name="pv") as v:
            col0 = b.mul(v, i64(w))
            rows = []
            for i in range(w):
                c = b.add(col0, i64(i))
                ok = b.icmp_signed("<", c, cv)
                rows.append((ok, b.mul(b.add(j0, self.imin(c, b.sub(cv, i64(1)))), i64(s.k))))
            if kfull:
                with loop(b, 0, kfull, step=w, name="pt") as k0:
                    vecs = [b.select(ok, self.vload(src, b.add(off, k0), None), zero) for ok, off in rows]
                    for i, t in enumerate(_transpose(b, vecs)):
                        self.vstore(t, buf, b.add(b.mul(b.add(k0, i64(i)), i64(s.nr)), col0), None)
            if kfull < s.k:
                with loop(b, kfull, s.k, name="pr") as k:
                    for i, (ok, off) in enumerate(rows):
                        x = b.load(gep(b, F32, src, b.add(off, k)), typ=F32)
                        dst = gep(b, F32, buf, b.add(b.mul(k, i64(s.nr)), b.add(col0, i64(i))))
                        b.store(b.select(ok, x, const(F32, 0.0)), dst)

    def micro(self, i0: ir.Value, rv: ir.Value, j0: ir.Value, masks: list[ir.Value]) -> None:
        b, s, w = self.b, self.s, self.w
        mr, nv = s.mr, s.nv
        acc = [[alloca_entry(b, self.vty, f"acc{r}_{v}") for v in range(nv)] for r in range(mr)]
        for r in range(mr):
            for v in range(nv):
                b.store(const(self.vty, 0.0), acc[r][v])
        rows = [b.add(i0, self.imin(i64(r), b.sub(rv, i64(1)))) for r in range(mr)]  # clamped
        a = self.ptr(self.mm.operands[0])
        bsrc = self.ptr(self.mm.operands[1])
        fma = _fmuladd(b.module, self.vty)
        if s.pack_a:
            a = self.apacked
            a_base = [b.add(b.mul(i0, i64(s.k)), i64(r)) for r in range(mr)]
        else:
            a_base = rows if s.ta else [b.mul(r_, i64(s.k)) for r_ in rows]
        with loop(b, 0, s.k, name="k") as k:
            if s.pack_b:
                brow = b.mul(k, i64(s.nr))
                bv = [self.vload(self.packed, b.add(brow, i64(v * w)), None) for v in range(nv)]
            else:
                brow = b.add(b.mul(k, i64(s.n)), j0)
                bv = [self.vload(bsrc, b.add(brow, i64(v * w)), masks[v]) for v in range(nv)]
            for r in range(mr):
                if s.pack_a:
                    idx = b.add(b.mul(k, i64(mr)), a_base[r])
                else:
                    idx = b.add(b.mul(k, i64(s.m)), a_base[r]) if s.ta else b.add(a_base[r], k)
                xs = self.splat(b.load(gep(b, F32, a, idx), typ=F32))
                for v in range(nv):
                    cur = b.load(acc[r][v], typ=self.vty)
                    b.store(b.call(fma, [xs, bv[v], cur]), acc[r][v])
        tile = {self.mm.result: [[b.load(acc[r][v], typ=self.vty) for v in range(nv)] for r in range(mr)]}
        self.epilogue(tile, rows, rv, j0, masks)

    # ---- dot-product form (C = A @ B^T, small M) -----------------------------------------------
    def emit_dot(self) -> None:
        b, s, w = self.b, self.s, self.w
        ri, rj = s.dot_block
        units = -(-s.n // rj)
        lo, hi = self.range_of(units) if self.split == "n" else (i64(0), i64(units))
        a, bsrc = self.ptr(self.mm.operands[0]), self.ptr(self.mm.operands[1])
        kfull = s.k // w * w
        tail = s.k - kfull
        tmask = ir.Constant(ir.VectorType(I1, w), [1 if i < tail else 0 for i in range(w)])
        fma = _fmuladd(b.module, self.vty)
        red = _reduce_fadd(b.module, self.vty)
        with loop(b, lo, hi, name="jb") as jb:
            j0 = b.mul(jb, i64(rj))
            cv = self.imin(i64(rj), b.sub(i64(s.n), j0))
            cols = [b.add(j0, self.imin(i64(c), b.sub(cv, i64(1)))) for c in range(rj)]
            for cs in self.colsums:
                for c in range(rj):
                    with b.if_then(b.icmp_signed("<", i64(c), cv)):
                        b.store(const(F32, 0.0), gep(b, F32, self.ptr(cs.result), cols[c]))
            with loop(b, 0, -(-s.m // ri), name="ib") as ib:
                i0 = b.mul(ib, i64(ri))
                rv = self.imin(i64(ri), b.sub(i64(s.m), i0))
                rows = [b.add(i0, self.imin(i64(r), b.sub(rv, i64(1)))) for r in range(ri)]
                acc = [[alloca_entry(b, self.vty, f"d{r}_{c}") for c in range(rj)] for r in range(ri)]
                for r in range(ri):
                    for c in range(rj):
                        b.store(const(self.vty, 0.0), acc[r][c])
                abase = [b.mul(x, i64(s.k)) for x in rows]
                bbase = [b.mul(x, i64(s.k)) for x in cols]

                def chunk(k0: ir.Value, mask: ir.Value | None) -> None:
                    av = [self.vload(a, b.add(x, k0), mask) for x in abase]
                    bv = [self.vload(bsrc, b.add(x, k0), mask) for x in bbase]
                    for r in range(ri):
                        for c in range(rj):
                            cur = b.load(acc[r][c], typ=self.vty)
                            b.store(b.call(fma, [av[r], bv[c], cur]), acc[r][c])
                if kfull:
                    with loop(b, 0, kfull, step=w, name="kd") as k0:
                        chunk(k0, None)
                if tail:
                    chunk(i64(kfull), tmask)
                vals = {self.mm.result: [[b.call(red, [const(F32, -0.0), b.load(acc[r][c], typ=self.vty)],
                                                 fastmath=("reassoc",)) for c in range(rj)] for r in range(ri)]}
                self.dot_epilogue(vals, rows, rv, cols, cv)

    def dot_epilogue(self, vals: dict, rows: list[ir.Value], rv: ir.Value, cols: list[ir.Value],
                     cv: ir.Value) -> None:
        b, s = self.b, self.s
        ri, rj = len(rows), len(cols)

        def scalar(v: Value, r: int, c: int) -> ir.Value:
            if v in vals:
                return vals[v][r][c]
            if v in self.consts:
                return const(F32, self.consts[v])
            if v.shape == (s.m, s.n):
                idx = b.add(b.mul(rows[r], i64(s.n)), cols[c])
            elif v.shape in ((s.n,), (1, s.n)):
                idx = cols[c]
            elif v.shape == (s.m, 1):
                idx = rows[r]
            else:
                idx = i64(0)
            x = b.load(gep(b, mem_type(v.dtype), self.ptr(v), idx), typ=mem_type(v.dtype))
            return b.trunc(x, I1) if v.dtype.value == "i1" else x
        for op in self.epi:
            vals[op.result] = [[ewops.emit(b, op.name, op.attrs, [scalar(v, r, c) for v in op.operands],
                                           [v.dtype for v in op.operands], op.result.dtype)
                                for c in range(rj)] for r in range(ri)]
        for r in range(ri):
            for c in range(rj):
                ok = b.and_(b.icmp_signed("<", i64(r), rv), b.icmp_signed("<", i64(c), cv))
                with b.if_then(ok):
                    for val, t in vals.items():
                        if val in self.outputs:
                            b.store(t[r][c], gep(b, F32, self.ptr(val), b.add(b.mul(rows[r], i64(s.n)), cols[c])))
                    for cs in self.colsums:
                        x = vals[cs.operands[0]][r][c]
                        if cs.name == "mean":
                            x = b.fmul(x, const(F32, 1.0 / s.m))
                        p = gep(b, F32, self.ptr(cs.result), cols[c])
                        b.store(b.fadd(b.load(p, typ=F32), x, flags=REDUCE), p)

    # ---- epilogue ------------------------------------------------------------------------
    def operand(self, v: Value, tile: dict, rows: list[ir.Value], j0: ir.Value,
                masks: list[ir.Value]) -> list[list[ir.Value]]:
        b, s, w = self.b, self.s, self.w
        nv, mr = s.nv, s.mr
        if v in tile:
            return tile[v]
        if v in self.consts:
            c = const(self.vty, self.consts[v])
            return [[c] * nv for _ in range(mr)]
        is_bool = v.dtype.value == "i1"
        ety = mem_type(v.dtype)
        vty = ir.VectorType(I1 if is_bool else ety, w)
        base = self.ptr(v)

        def fix(x: ir.Value) -> ir.Value:
            return b.trunc(x, vty) if is_bool else x

        def scalar(index: ir.Value) -> ir.Value:
            x = b.load(gep(b, ety, base, index), typ=ety)
            return self.splat(b.trunc(x, I1) if is_bool else x, vty)
        if v.shape == (s.m, s.n):
            return [[fix(self.vload(base, b.add(b.mul(rows[r], i64(s.n)), b.add(j0, i64(vv * w))), masks[vv], ety))
                     for vv in range(nv)] for r in range(mr)]
        if v.shape in ((s.n,), (1, s.n)):
            row = [fix(self.vload(base, b.add(j0, i64(vv * w)), masks[vv], ety)) for vv in range(nv)]
            return [row for _ in range(mr)]
        if v.shape == (s.m, 1):
            return [[scalar(rows[r])] * nv for r in range(mr)]
        sp = scalar(i64(0))
        return [[sp] * nv for _ in range(mr)]

    def epilogue(self, tile: dict, rows: list[ir.Value], rv: ir.Value, j0: ir.Value, masks: list[ir.Value]) -> None:
        b, s, w = self.b, self.s, self.w
        nv, mr = s.nv, s.mr
        for op in self.epi:
            args = [self.operand(v, tile, rows, j0, masks) for v in op.operands]
            dts = [v.dtype for v in op.operands]
            tile[op.result] = [[ewops.emit(b, op.name, op.attrs, [a[r][vv] for a in args], dts, op.result.dtype, w)
                                for vv in range(nv)] for r in range(mr)]
        stores = [(self.ptr(val), t) for val, t in tile.items() if val in self.outputs]
        for r in range(mr):
            if not stores:
                break
            with b.if_then(b.icmp_signed("<", i64(r), rv)):
                for base, t in stores:
                    for vv in range(nv):
                        idx = b.add(b.mul(rows[r], i64(s.n)), b.add(j0, i64(vv * w)))
                        self.vstore(t[r][vv], base, idx, masks[vv])
        for cs in self.colsums:
            t = tile[cs.operands[0]]
            scale = 1.0 / s.m if cs.name == "mean" else 1.0
            out = self.ptr(cs.result)
            zero = const(self.vty, 0.0)
            for vv in range(nv):
                acc = t[0][vv]
                for r in range(1, mr):
                    keep = self.splat(b.icmp_signed("<", i64(r), rv))
                    acc = b.fadd(acc, b.select(keep, t[r][vv], zero), flags=REDUCE)
                if scale != 1.0:
                    acc = b.fmul(acc, const(self.vty, scale), flags=CONTRACT)
                idx = b.add(j0, i64(vv * w))
                old = self.vload(out, idx, masks[vv])
                self.vstore(b.fadd(old, acc, flags=REDUCE), out, idx, masks[vv])


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


def _reduce_fadd(mod: ir.Module, vty: ir.VectorType) -> ir.Function:
    name = f"llvm.vector.reduce.fadd.v{vty.count}f32"
    fn = mod.globals.get(name)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(F32, [F32, vty]), name)
    return fn


def _fmuladd(mod: ir.Module, vty: ir.VectorType) -> ir.Function:
    name = f"llvm.fmuladd.v{vty.count}f32"
    fn = mod.globals.get(name)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(vty, [vty, vty, vty]), name)
    return fn


__all__ = ["GemmEmitter", "GemmShape", "gemm_shape", "split_axis", "I64"]
