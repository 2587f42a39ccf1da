"""Elementwise op semantics in LLVM IR, on scalars or vectors: one emitter for every kernel kind."""

from __future__ import annotations

import math
from typing import Any

from llvmlite import ir

from codegen.llvm.irutil import CONTRACT, F32, I32, const, intrinsic
from mlpc.errors import MlpcError
from mlpc.ops.elementwise import GELU_C, GELU_K, GELU_SAT
from mlpc.types import DType

LOG2E = 1.4426950408889634
LN2_HI = 0.693359375
LN2_LO = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
            5.0000001201e-1)


def fexp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """exp(x) in straight-line float code (Cephes expf: ~1 ulp, vectorizes; no libm call).

    x is clamped to [-87.3, 88.7]: results below 2^-126 become ~1.2e-38 instead of subnormal/zero."""
    ty = x.type
    ity = ir.VectorType(I32, ty.count) if isinstance(ty, ir.VectorType) else I32
    isnan = b.fcmp_unordered("uno", x, x)
    xc = b.select(b.fcmp_ordered(">", x, const(ty, 88.7)), const(ty, 88.7), x)
    xc = b.select(b.fcmp_ordered("<", xc, const(ty, -87.3)), const(ty, -87.3), xc)
    n = intrinsic(b, "floor", ty, [b.fadd(b.fmul(xc, const(ty, LOG2E)), const(ty, 0.5))])
    r = b.fsub(xc, b.fmul(n, const(ty, LN2_HI)))
    r = b.fsub(r, b.fmul(n, const(ty, LN2_LO)))
    p = const(ty, EXP_POLY[0])
    for c in EXP_POLY[1:]:
        p = b.fadd(b.fmul(p, r, flags=("contract",)), const(ty, c), flags=("contract",))
    r2 = b.fmul(r, r)
    p = b.fadd(b.fadd(b.fmul(p, r2, flags=("contract",)), r, flags=("contract",)), const(ty, 1.0))
    e = b.shl(b.add(b.fptosi(n, ity), const(ity, 127)), const(ity, 23))
    res = b.fmul(p, b.bitcast(e, ty))
    big = b.fcmp_ordered(">", x, const(ty, 88.72283))
    res = b.select(big, const(ty, math.inf), res)
    return b.select(isnan, x, res)


def _f(b: ir.IRBuilder, name: str, x: ir.Value, y: ir.Value) -> ir.Value:
    return getattr(b, name)(x, y, flags=CONTRACT)


def _max(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """NumPy maximum: NaN if either is NaN."""
    pick_x = b.or_(b.fcmp_ordered(">=", x, y), b.fcmp_unordered("uno", x, x))
    return b.select(pick_x, x, y)


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    pick_x = b.or_(b.fcmp_ordered("<=", x, y), b.fcmp_unordered("uno", x, x))
    return b.select(pick_x, x, y)


def _tanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return intrinsic(b, "tanh", x.type, [x])


def _sigmoid(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    one = const(x.type, 1.0)
    return b.fdiv(one, b.fadd(one, fexp(b, b.fneg(x))))


def _gelu(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    ty = x.type
    xc = _min(b, _max(b, x, const(ty, -GELU_SAT)), const(ty, GELU_SAT))  # x^3 cannot overflow
    inner = b.fmul(const(ty, GELU_C), b.fadd(xc, b.fmul(const(ty, GELU_K), b.fmul(b.fmul(xc, xc), xc))))
    return b.fmul(b.fmul(const(ty, 0.5), x), b.fadd(const(ty, 1.0), _tanh(b, inner)))


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


_FCMP = {"greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=", "equal": "=="}


def emit(b: ir.IRBuilder, name: str, attrs: dict[str, Any], args: list[ir.Value], dtypes: list[DType],
         out: DType, lanes: int = 1) -> ir.Value:
    """The IR for one elementwise op applied to already-loaded (and broadcast) operands."""
    is_float = dtypes[0] == DType.f32 if dtypes else True
    if name in ("broadcast_to", "reshape"):
        return args[0]
    if name in ("add", "sub", "mul", "div"):
        x, y = args
        if is_float:
            return _f(b, {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}[name], x, y)
        if name == "div":
            raise MlpcError("llvm backend: integer div is not supported")
        return getattr(b, name)(x, y)
    if name in ("maximum", "minimum"):
        x, y = args
        if is_float:
            return (_max if name == "maximum" else _min)(b, x, y)
        pred = ">=" if name == "maximum" else "<="
        return b.select(b.icmp_signed(pred, x, y), x, y)
    if name in _FCMP:
        x, y = args
        if is_float:
            return b.fcmp_ordered(_FCMP[name], x, y)
        if dtypes[0] == DType.i1:
            return b.icmp_unsigned(_FCMP[name], x, y)
        return b.icmp_signed(_FCMP[name], x, y)
    if name == "where":
        return b.select(args[0], args[1], args[2])
    if name == "cast":
        return _cast(b, args[0], dtypes[0], out, lanes)
    x = args[0]
    if not is_float:
        if name == "neg":
            return b.neg(x)
        raise MlpcError(f"llvm backend: {name} of {dtypes[0].value} is not supported")
    ty = x.type
    zero = const(ty, 0.0)
    if name == "neg":
        return b.fneg(x)
    if name == "exp":
        return fexp(b, x)
    if name == "log":
        return intrinsic(b, "log", ty, [x])
    if name == "sqrt":
        return intrinsic(b, "sqrt", ty, [x])
    if name == "square":
        return b.fmul(x, x)
    if name == "abs":
        return intrinsic(b, "fabs", ty, [x])
    if name == "sign":
        pos = b.select(b.fcmp_ordered(">", x, zero), const(ty, 1.0), x)
        return b.select(b.fcmp_ordered("<", x, zero), const(ty, -1.0), pos)
    if name == "pow":
        return _pow(b, x, float(attrs["exponent"]))
    if name == "relu":
        return b.select(b.fcmp_ordered("<", x, zero), zero, x)
    if name == "relu_grad":
        return b.select(b.fcmp_ordered(">", x, zero), args[1], const(args[1].type, 0.0))
    if name == "leaky_relu":
        return b.select(b.fcmp_ordered(">", x, zero), x, b.fmul(x, const(ty, attrs["alpha"])))
    if name == "leaky_relu_grad":
        g = args[1]
        return b.select(b.fcmp_ordered(">", x, zero), g, b.fmul(g, const(ty, attrs["alpha"])))
    if name == "sigmoid":
        return _sigmoid(b, x)
    if name == "tanh":
        return _tanh(b, x)
    if name == "gelu":
        return _gelu(b, x)
    raise MlpcError(f"llvm backend: no code for elementwise op {name}")
