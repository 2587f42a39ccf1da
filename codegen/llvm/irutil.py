"""llvmlite IR helpers: types, splat constants, counted loops, fast-math flags, intrinsic calls."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from llvmlite import ir

from mlpc.errors import MlpcError
from mlpc.types import DType

F32 = ir.FloatType()
F64 = ir.DoubleType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()  # opaque pointer (LLVM >= 17)

# Fast-math flags (see README "Floating point"). Elementwise float ops get `contract` only (a*b+c may
# become one FMA); nothing that changes IEEE special cases the NumPy reference produces: no nsz (signed
# zeros: x / (0 - 0.0) is +inf, not -inf), no arcp (x / y stays a division, not x * (1/y)), no afn, no
# nnan/ninf (NaN and Inf must flow through so the trainer can detect divergence), and no reassoc (which
# rewrites (x / y) * y to x, even where x / y overflows). Only accumulations of a reduction (sum, mean,
# mse, softmax row sums, column sums) get `reassoc` as well, so their loops vectorize: summation order
# is all it changes, as a different BLAS kernel would.
CONTRACT = ("contract",)
REDUCE = ("reassoc", "contract")


def vec(ty: ir.Type, lanes: int) -> ir.Type:
    return ty if lanes == 1 else ir.VectorType(ty, lanes)


def elem_type(dt: DType) -> ir.Type:
    """In-register type of a dtype (i1 is stored as i8 in memory)."""
    if dt == DType.f32:
        return F32
    if dt == DType.i32:
        return I32
    if dt == DType.i1:
        return I1
    raise MlpcError(f"the llvm backend supports f32, i32 and i1 tensors, not {dt.value}")


def mem_type(dt: DType) -> ir.Type:
    return I8 if dt == DType.i1 else elem_type(dt)


def const(ty: ir.Type, value: float | int) -> ir.Constant:
    """A scalar constant, or a splat if `ty` is a vector type."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, value)] * ty.count)
    return ir.Constant(ty, value)


def i64(n: int) -> ir.Constant:
    return ir.Constant(I64, n)


def intrinsic(b: ir.IRBuilder, name: str, ret: ir.Type, args: list[ir.Value]) -> ir.Value:
    """Call `llvm.<name>.<suffix>` overloaded on the return type (f32 or <N x f32>)."""
    suffix = _suffix(ret)
    fname = f"llvm.{name}.{suffix}"
    mod = b.module
    fn = mod.globals.get(fname)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(ret, [a.type for a in args]), fname)
    return b.call(fn, args)


def _suffix(t: ir.Type) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_suffix(t.element)}"
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    raise MlpcError(f"no intrinsic suffix for {t}")


def declare(mod: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    fn = mod.globals.get(name)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(ret, args), name)
    return fn


@contextmanager
def loop(b: ir.IRBuilder, start: ir.Value | int, stop: ir.Value | int, step: int = 1,
         name: str = "i") -> Iterator[ir.Value]:
    """`for (i = start; i < stop; i += step)` over i64; the body is emitted inside the `with`."""
    start_v = i64(start) if isinstance(start, int) else start
    stop_v = i64(stop) if isinstance(stop, int) else stop
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    end = b.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(start_v, pre)
    b.cbranch(b.icmp_signed("<", i, stop_v), body, end)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, i64(step), name=f"{name}.next", flags=("nsw",))
    i.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(end)


def gep(b: ir.IRBuilder, ty: ir.Type, base: ir.Value, index: ir.Value | int) -> ir.Value:
    idx = i64(index) if isinstance(index, int) else index
    return b.gep(base, [idx], inbounds=True, source_etype=ty)


def load(b: ir.IRBuilder, ty: ir.Type, base: ir.Value, index: ir.Value | int, align: int = 4) -> ir.Value:
    v = b.load(gep(b, ty, base, index), typ=ty)
    v.align = align
    return v


def store(b: ir.IRBuilder, value: ir.Value, base: ir.Value, index: ir.Value | int, align: int = 4) -> None:
    s = b.store(value, gep(b, value.type, base, index))
    s.align = align


def load_elem(b: ir.IRBuilder, dt: DType, base: ir.Value, index: ir.Value | int) -> ir.Value:
    """Load one element of dtype `dt` (i1 stored as a byte)."""
    v = load(b, mem_type(dt), base, index, align=mem_type(dt).width // 8 if dt != DType.f32 else 4)
    return b.trunc(v, I1) if dt == DType.i1 else v


def store_elem(b: ir.IRBuilder, dt: DType, value: ir.Value, base: ir.Value, index: ir.Value | int) -> None:
    if dt == DType.i1:
        value = b.zext(value, I8)
    store(b, value, base, index, align=mem_type(dt).width // 8 if dt != DType.f32 else 4)


def alloca_entry(b: ir.IRBuilder, ty: ir.Type, name: str = "") -> ir.Value:
    """An alloca in the function's entry block (so mem2reg/SROA promotes it)."""
    fn = b.function
    with b.goto_block(fn.entry_basic_block):
        b.position_at_start(fn.entry_basic_block)
        return b.alloca(ty, name=name)


def kernel_function(mod: ir.Module, name: str, nptrs: int) -> ir.Function:
    """A kernel's function, `void name(ptr noalias x nptrs, i64 tid)`: internal, never inlined, no unwinding."""
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR] * nptrs + [I64]), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    for a in fn.args[:-1]:
        a.add_attribute("noalias")
    return fn
