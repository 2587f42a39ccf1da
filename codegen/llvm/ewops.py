"""Renders scalar expressions (each elementwise op's rule) to LLVM IR, on scalars or vectors."""

from __future__ import annotations

import functools
from typing import Any, Callable

from llvmlite import ir

from codegen.llvm.irutil import CONTRACT, F32, I32, const, intrinsic
from codegen.llvm.vecmath import fexp, flog, ftanh
from mlpc.errors import MlpcError
from mlpc.ops import registry
from mlpc.ops import scalar as S
from mlpc.types import DType


def _max(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """NumPy maximum: NaN if either is NaN."""
    pick_x = b.or_(b.fcmp_ordered(">=", x, y), b.fcmp_unordered("uno", x, x))
    return b.select(pick_x, x, y)


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    pick_x = b.or_(b.fcmp_ordered("<=", x, y), b.fcmp_unordered("uno", x, x))
    return b.select(pick_x, x, y)


def _pow(b: ir.IRBuilder, x: ir.Value, p: float) -> ir.Value:
    if p == 1.0:
        return x
    if p == 2.0:
        return b.fmul(x, x)
    if p == 3.0:
        return b.fmul(b.fmul(x, x), x)
    if p == 0.5:
        return intrinsic(b, "sqrt", x.type, [x])
    if p == -1.0:
        return b.fdiv(const(x.type, 1.0), x)
    return intrinsic(b, "pow", x.type, [x, const(x.type, p)])


def _cast(b: ir.IRBuilder, x: ir.Value, src: DType, dst: DType, lanes: int) -> ir.Value:
    def t(base: ir.Type) -> ir.Type:
        return base if lanes == 1 else ir.VectorType(base, lanes)
    if src == dst:
        return x
    if src == DType.f32:
        if dst == DType.i32:
            return b.fptosi(x, t(I32))
        if dst == DType.i1:
            return b.fcmp_unordered("une", x, const(x.type, 0.0))
    if src == DType.i32:
        if dst == DType.f32:
            return b.sitofp(x, t(F32))
        if dst == DType.i1:
            return b.icmp_signed("!=", x, const(x.type, 0))
    if src == DType.i1:
        if dst == DType.f32:
            return b.uitofp(x, t(F32))
        if dst == DType.i32:
            return b.zext(x, t(I32))
    raise MlpcError(f"llvm backend: no cast from {src.value} to {dst.value}")


_FCMP = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "=="}
_FARITH = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}
_FUNARY: dict[str, Callable[[ir.IRBuilder, ir.Value], ir.Value]] = {
    "neg": lambda b, x: b.fneg(x),
    "exp": fexp,
    "log": flog,
    "sqrt": lambda b, x: intrinsic(b, "sqrt", x.type, [x]),
    "abs": lambda b, x: intrinsic(b, "fabs", x.type, [x]),
    "tanh": ftanh,
}


@functools.cache
def _rule(name: str, attrs: tuple[tuple[str, Any], ...]) -> S.Expr:
    rule = registry.get(name).scalar
    if rule is None:
        raise MlpcError(f"llvm backend: op {name} has no scalar rule (not elementwise)")
    return rule(dict(attrs))


def emit(b: ir.IRBuilder, name: str, attrs: dict[str, Any], args: list[ir.Value], dtypes: list[DType],
         out: DType, lanes: int = 1) -> ir.Value:
    """The IR for one elementwise op applied to already-loaded (and broadcast) operands: its scalar
    rule (beside the op in mlpc/ops) rendered with contractible (not otherwise fast-math) arithmetic."""
    expr = _rule(name, tuple(sorted(attrs.items())))
    return render(b, expr, args, dtypes, out, lanes, CONTRACT, name)


def render(b: ir.IRBuilder, expr: S.Expr, args: list[ir.Value], dtypes: list[DType], out: DType,
           lanes: int = 1, flags: tuple[str, ...] = CONTRACT, what: str = "expression") -> ir.Value:
    """A scalar expression over loaded values `args` (of `dtypes`); casts convert to `out`."""
    memo: dict[int, tuple[ir.Value, DType]] = {}
    f32_type = F32 if lanes == 1 else ir.VectorType(F32, lanes)

    def node(n: S.Expr, like: tuple[ir.Value, DType] | None) -> tuple[ir.Value, DType]:
        if n.fn == "const":
            ty, dt = (like[0].type, like[1]) if like is not None else (f32_type, DType.f32)
            return const(ty, _cval(dt, float(n.value or 0.0))), dt
        key = id(n)
        if key not in memo:
            memo[key] = _node(n)
        return memo[key]

    def operands(n: S.Expr) -> list[tuple[ir.Value, DType]]:
        first = next((node(a, None) for a in n.args if a.fn != "const" and (n.fn != "select" or a is not n.args[0])),
                     None)
        return [node(a, first) if a.fn == "const" else node(a, None) for a in n.args]

    def _node(n: S.Expr) -> tuple[ir.Value, DType]:
        if n.fn == "arg":
            i = int(n.value or 0)
            return args[i], dtypes[i]
        ops = operands(n)
        vals = [v for v, _ in ops]
        dt = ops[0][1]
        is_float = dt == DType.f32
        if n.fn == "select":
            return b.select(*vals), ops[1][1]
        if n.fn == "cast":
            return _cast(b, vals[0], dt, out, lanes), out
        if n.fn in _FCMP:
            if is_float:
                return b.fcmp_ordered(_FCMP[n.fn], *vals), DType.i1
            cmp = b.icmp_unsigned if dt == DType.i1 else b.icmp_signed
            return cmp(_FCMP[n.fn], *vals), DType.i1
        if n.fn in _FARITH:
            if is_float:
                return getattr(b, _FARITH[n.fn])(*vals, flags=flags), dt
            if n.fn == "div":
                raise MlpcError(f"llvm backend: integer div is not supported ({what})")
            return getattr(b, n.fn)(*vals), dt
        if n.fn in ("max", "min"):
            if is_float:
                return (_max if n.fn == "max" else _min)(b, *vals), dt
            return b.select(b.icmp_signed(">=" if n.fn == "max" else "<=", *vals), *vals), dt
        if n.fn == "neg" and not is_float:
            return b.neg(vals[0]), dt
        if not is_float:
            raise MlpcError(f"llvm backend: {what} of {dt.value} is not supported")
        if n.fn == "fma":
            return b.fadd(b.fmul(vals[0], vals[1], flags=flags), vals[2], flags=flags), dt
        if n.fn == "powc":
            return _pow(b, vals[0], float(n.value or 0.0)), dt
        return _FUNARY[n.fn](b, vals[0]), dt

    return node(expr, None)[0]


def _cval(dt: DType, v: float) -> float | int:
    return int(v) if dt in (DType.i32, DType.i1) else v
