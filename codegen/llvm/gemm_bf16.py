"""bf16 GEMM: operands rounded to bf16 (ties to even) while packing, fp32 accumulation; VDPBF16PS or widened FMAs.

Both operands are packed into k-pairs: one i32 holds op(X)[., 2p] in its low and op(X)[., 2p+1] in its
high 16 bits (zero past K), the layout VDPBF16PS multiplies. op(B) goes, per column panel, into
[K2][NR] pairs (K2 = ceil(K/2)); op(A) into [M][lda >= K2] pairs (A row-major) or [K2][lda >= M] (A transposed), so
each packing loop reads and writes contiguous vectors. The microkernel is the fp32 one's (MR x NV*W
accumulators, per pair: NV panel loads, MR pair broadcasts) with one VDPBF16PS per accumulator on
AVX512-BF16 hosts, and otherwise two FMAs on the pair widened to f32 (odd element first, as VDPBF16PS
orders them; every product of two bf16 values is exact in f32). The rounding is integer arithmetic on
the f32 bits, identical on every host and to mlpc.precision.round_bf16. The epilogue (bias, activation,
column sums) is the fp32 emitter's, on the f32 accumulators.
"""

from __future__ import annotations

from llvmlite import ir

from codegen.llvm.gemm import GemmEmitter, _fmuladd, _transpose, padded_stride
from codegen.llvm.irutil import F32, I32, alloca_entry, const, gep, i64, loop
from codegen.llvm.target import Target

I16 = ir.IntType(16)


class BFloat(ir.Type):
    """LLVM's `bfloat` (llvmlite has no such type): only used to call the AVX512-BF16 intrinsic."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BFloat)

    def __hash__(self) -> int:
        return hash("bfloat")


def round_bits(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The f32 value(s) x rounded to bf16, as i32 bits with the low 16 zero: RNE on the bits; NaN quieted."""
    ity = I32 if x.type == F32 else ir.VectorType(I32, x.type.count)
    bits = b.bitcast(x, ity)
    lsb = b.and_(b.lshr(bits, const(ity, 16)), const(ity, 1))
    rounded = b.and_(b.add(b.add(bits, const(ity, 0x7FFF)), lsb), const(ity, 0xFFFF0000))
    quiet = b.and_(b.or_(bits, const(ity, 0x00400000)), const(ity, 0xFFFF0000))
    return b.select(b.fcmp_unordered("uno", x, x), quiet, rounded)


def pair(b: ir.IRBuilder, even: ir.Value, odd: ir.Value) -> ir.Value:
    """bf16(even) in the low and bf16(odd) in the high half of each i32."""
    e = round_bits(b, even)
    return b.or_(b.lshr(e, const(e.type, 16)), round_bits(b, odd))


def pairs_along(b: ir.IRBuilder, v0: ir.Value, v1: ir.Value, w: int) -> ir.Value:
    """W consecutive k-pairs from 2W consecutive f32 (v0 then v1): the high i16 of each rounded element."""
    r0, r1 = round_bits(b, v0), round_bits(b, v1)
    h = ir.VectorType(I16, 2 * w)
    odd = ir.Constant(ir.VectorType(I32, 2 * w), [2 * i + 1 for i in range(2 * w)])
    s = b.shuffle_vector(b.bitcast(r0, h), b.bitcast(r1, h), odd)
    return b.bitcast(s, ir.VectorType(I32, w))


class Bf16GemmEmitter(GemmEmitter):
    """GemmEmitter with bf16 operands: always the packed panel form (no dot form, no unpacked operand)."""

    def __init__(self, *args, native: bool, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.native = native
        self.ivty = ir.VectorType(I32, self.w)
        self.k2 = -(-self.s.k // 2)
        self.lda = padded_stride(self.s.m if self.s.ta else self.k2)  # row stride of packed op(A)

    def emit(self) -> None:
        b, s = self.b, self.s
        assert self.scratch is not None and not s.dot
        per_thread = self.k2 * s.nr + s.a_panel
        base = b.mul(self.tid, i64(per_thread))
        self.packed = gep(b, I32, self.scratch, base)
        self.apacked = gep(b, I32, self.scratch, b.add(base, i64(self.k2 * s.nr)))
        self.pack_a_bf16()
        lo, hi = self.range_of(s.col_tiles) if self.split == "n" else (i64(0), i64(s.col_tiles))
        with loop(b, lo, hi, name="jt") as jt:
            j0 = b.mul(jt, i64(s.nr))
            cv = self.imin(i64(s.nr), b.sub(i64(s.n), j0))
            self.column_panel(j0, cv)

    # ---- packing ------------------------------------------------------------------------
    def row_range(self) -> tuple[ir.Value, ir.Value]:
        """Rows of op(A) this thread's tiles read (all of them unless the row tiles are split)."""
        b, s = self.b, self.s
        if self.split != "m":
            return i64(0), i64(s.m)
        lo, hi = self.range_of(s.row_tiles)
        return b.mul(lo, i64(s.mr)), self.imin(b.mul(hi, i64(s.mr)), i64(s.m))

    def pack_a_bf16(self) -> None:
        b, s, w = self.b, self.s, self.w
        src = self.ptr(self.mm.operands[0])
        r0, r1 = self.row_range()
        if s.ta:  # A is [K, M]: apacked[p*lda + m] = pair(A[2p, m], A[2p+1, m]), vectors along m
            with loop(b, 0, self.k2, name="pap") as p:
                even = b.mul(b.mul(p, i64(2)), i64(s.m))
                has_odd = b.icmp_signed("<", b.add(b.mul(p, i64(2)), i64(1)), i64(s.k))
                odd = b.select(has_odd, b.add(even, i64(s.m)), even)
                with loop(b, r0, r1, step=w, name="pam") as m:
                    mask = self.lane_mask(b.sub(r1, m))
                    x0 = self.vload(src, b.add(even, m), mask)
                    x1 = b.select(has_odd, self.vload(src, b.add(odd, m), mask), const(self.vty, 0.0))
                    self.vstore(pair(b, x0, x1), self.apacked, b.add(b.mul(p, i64(self.lda)), m), mask)
            return
        # A is [M, K]: apacked[m*lda + p], W pairs at a time from 2W consecutive values of row m
        full = s.k // (2 * w)
        with loop(b, r0, r1, name="pam") as m:
            row, out = b.mul(m, i64(s.k)), b.mul(m, i64(self.lda))
            if full:
                with loop(b, 0, full, name="pac") as c:
                    k0 = b.add(row, b.mul(c, i64(2 * w)))
                    v = pairs_along(b, self.vload(src, k0, None), self.vload(src, b.add(k0, i64(w)), None), w)
                    self.vstore(v, self.apacked, b.add(out, b.mul(c, i64(w))), None)
            if full * w < self.k2:
                with loop(b, full * w, self.k2, name="par") as p:
                    self.store_scalar_pair(src, row, p, b.add(out, p))

    def store_scalar_pair(self, src: ir.Value, row: ir.Value, p: ir.Value, dst: ir.Value,
                          ok: ir.Value | None = None, buf: ir.Value | None = None) -> None:
        """buf[dst] = pair(src[row + 2p], src[row + 2p + 1] or 0 past K), zero where `ok` is false."""
        b, s = self.b, self.s
        k = b.mul(p, i64(2))
        x0 = b.load(gep(b, F32, src, b.add(row, k)), typ=F32)
        has_odd = b.icmp_signed("<", b.add(k, i64(1)), i64(s.k))
        x1 = b.load(gep(b, F32, src, b.add(row, b.select(has_odd, b.add(k, i64(1)), k))), typ=F32)
        v = pair(b, x0, b.select(has_odd, x1, const(F32, 0.0)))
        if ok is not None:
            v = b.select(ok, v, ir.Constant(I32, 0))
        b.store(v, gep(b, I32, buf if buf is not None else self.apacked, dst))

    def pack(self, j0: ir.Value, cv: ir.Value) -> None:
        """packed[p][c] = pair(op(B)[2p, j0 + c], op(B)[2p + 1, j0 + c]) for c < cv, zero beyond."""
        b, s, w = self.b, self.s, self.w
        src, buf = self.ptr(self.mm.operands[1]), self.packed
        if not s.tb:  # B is [K, N]: rows 2p and 2p+1, vectors along the columns
            masks = [self.lane_mask(b.sub(cv, i64(v * w))) for v in range(s.nv)]
            with loop(b, 0, self.k2, name="pk") as p:
                even = b.add(b.mul(b.mul(p, i64(2)), i64(s.n)), j0)
                has_odd = b.icmp_signed("<", b.add(b.mul(p, i64(2)), i64(1)), i64(s.k))
                odd = b.select(has_odd, b.add(even, i64(s.n)), even)
                for v in range(s.nv):
                    x0 = self.vload(src, b.add(even, i64(v * w)), masks[v])
                    x1 = b.select(has_odd, self.vload(src, b.add(odd, i64(v * w)), masks[v]), const(self.vty, 0.0))
                    self.vstore(pair(b, x0, x1), buf, b.add(b.mul(p, i64(s.nr)), i64(v * w)), None)
            return
        # B is [N, K]: W columns x W pairs read along K, transposed in registers; past cv: zero
        full = s.k // (2 * w)
        zero = ir.Constant(self.ivty, None)
        with loop(b, 0, s.nv, name="pv") as v:
            col0 = b.mul(v, i64(w))
            rows = []
            for i in range(w):
                c = b.add(col0, i64(i))
                ok = b.icmp_signed("<", c, cv)
                rows.append((ok, b.mul(b.add(j0, self.imin(c, b.sub(cv, i64(1)))), i64(s.k))))
            if full:
                with loop(b, 0, full, name="pt") as ch:
                    k0 = b.mul(ch, i64(2 * w))
                    vecs = []
                    for ok, off in rows:
                        at = b.add(off, k0)
                        pv = pairs_along(b, self.vload(src, at, None), self.vload(src, b.add(at, i64(w)), None), w)
                        vecs.append(b.select(ok, pv, zero))
                    for i, t in enumerate(_transpose(b, vecs)):
                        p = b.add(b.mul(ch, i64(w)), i64(i))
                        self.vstore(t, buf, b.add(b.mul(p, i64(s.nr)), col0), None)
            if full * w < self.k2:
                with loop(b, full * w, self.k2, name="pr") as p:
                    for i, (ok, off) in enumerate(rows):
                        dst = b.add(b.mul(p, i64(s.nr)), b.add(col0, i64(i)))
                        self.store_scalar_pair(src, off, p, dst, ok, buf)

    # ---- microkernel --------------------------------------------------------------------
    def micro(self, i0: ir.Value, rv: ir.Value, j0: ir.Value, masks: list[ir.Value]) -> None:
        b, s, w = self.b, self.s, self.w
        mr, nv = s.mr, s.nv
        acc = [[alloca_entry(b, self.vty, f"acc{r}_{v}") for v in range(nv)] for r in range(mr)]
        for r in range(mr):
            for v in range(nv):
                b.store(const(self.vty, 0.0), acc[r][v])
        rows = [b.add(i0, self.imin(i64(r), b.sub(rv, i64(1)))) for r in range(mr)]  # clamped
        with loop(b, 0, self.k2, name="k") as p:
            brow = b.mul(p, i64(s.nr))
            bv = [self.vload(self.packed, b.add(brow, i64(v * w)), None, I32) for v in range(nv)]
            bops = [self.operands_of(x) for x in bv]
            for r in range(mr):
                idx = b.add(b.mul(p if s.ta else rows[r], i64(self.lda)), rows[r] if s.ta else p)
                a = b.load(gep(b, I32, self.apacked, idx), typ=I32)
                aops = self.operands_of(self.splat(a))
                for v in range(nv):
                    cur = b.load(acc[r][v], typ=self.vty)
                    b.store(self.dot2(cur, aops, bops[v]), acc[r][v])
        tile = {self.mm.result: [[b.load(acc[r][v], typ=self.vty) for v in range(nv)] for r in range(mr)]}
        self.epilogue(tile, rows, rv, j0, masks)

    def operands_of(self, x: ir.Value) -> tuple[ir.Value, ...]:
        """What dot2 multiplies: the pairs as 2W bf16 (native), or widened to (even, odd) f32 vectors."""
        b = self.b
        if self.native:
            return (b.bitcast(x, ir.VectorType(BFloat(), 2 * self.w)),)
        even = b.bitcast(b.shl(x, const(self.ivty, 16)), self.vty)
        odd = b.bitcast(b.and_(x, const(self.ivty, 0xFFFF0000)), self.vty)
        return even, odd

    def dot2(self, acc: ir.Value, a: tuple[ir.Value, ...], bv: tuple[ir.Value, ...]) -> ir.Value:
        b = self.b
        if self.native:
            return b.call(_dpbf16ps(b.module, self.w), [acc, a[0], bv[0]])
        fma = _fmuladd(b.module, self.vty)
        return b.call(fma, [a[0], bv[0], b.call(fma, [a[1], bv[1], acc])])


def gemm_emitter(target: Target, *args) -> GemmEmitter:  # type: ignore[no-untyped-def]
    """The gemm emitter for `target`'s precision (GemmEmitter's arguments follow the target)."""
    if target.precision == "bf16":
        return Bf16GemmEmitter(*args, bf16=True, native=target.bf16_native)
    return GemmEmitter(*args)


def _dpbf16ps(mod: ir.Module, w: int) -> ir.Function:
    name = "llvm.x86.avx512bf16.dpbf16ps.512"
    fn = mod.globals.get(name)
    if fn is None:
        vty, bty = ir.VectorType(F32, w), ir.VectorType(BFloat(), 2 * w)
        fn = ir.Function(mod, ir.FunctionType(vty, [vty, bty, bty]), name)
    return fn
