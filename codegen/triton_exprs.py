"""Renders scalar expressions (each elementwise op's rule) to Triton source, computed in fp32."""

from __future__ import annotations

import math

from codegen.views import UnsupportedError, View
from mlpc.ir import Op
from mlpc.ops import registry
from mlpc.ops import scalar as S
from mlpc.types import DType

TL_DTYPE = {DType.f32: "tl.float32", DType.bf16: "tl.bfloat16", DType.f16: "tl.float16",
            DType.f64: "tl.float64", DType.i32: "tl.int32", DType.i64: "tl.int64", DType.i1: "tl.int1"}
SIG_DTYPE = {DType.f32: "fp32", DType.bf16: "bf16", DType.f16: "fp16", DType.f64: "fp64",
             DType.i32: "i32", DType.i64: "i64", DType.i1: "i1"}


def literal(value: float, dtype: DType) -> str:
    """Source text of a constant of `dtype`."""
    if dtype.is_int:
        return str(int(value))
    if dtype == DType.i1:
        return "True" if value else "False"
    if math.isnan(value):
        return 'float("nan")'
    if math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    if value == 0 and math.copysign(1.0, value) < 0 and dtype == DType.f32:
        # a -0.0 literal reaches Triton's interpreter as +0.0 (x / -0.0 gave +inf): spell out its bits
        return "tl.full([], -2147483648, tl.int32).to(tl.float32, bitcast=True)"
    return repr(float(value))


def flit(value: float) -> str:
    """Source text of a float attribute (inf/nan as float("inf")/float("nan"), not bare names)."""
    return literal(float(value), DType.f32)


def const_view_text(v: View) -> str:
    return literal(v.const if v.const is not None else 0.0, v.dtype)


def compute_type(dtype: DType) -> str:
    """The register type a loaded value is converted to: floats compute in fp32 (fp64 stays)."""
    if dtype in (DType.bf16, DType.f16, DType.f32):
        return "tl.float32"
    return TL_DTYPE[dtype]


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "gt": ">", "ge": ">=", "lt": "<", "le": "<=",
           "eq": "=="}
_CALL = {"max": "tl.maximum({0}, {1})", "min": "tl.minimum({0}, {1})", "select": "tl.where({0}, {1}, {2})",
         "neg": "(-{0})", "exp": "tl.exp({0})", "log": "tl.log({0})", "sqrt": "tl.sqrt({0})", "abs": "tl.abs({0})",
         "tanh": "(2.0 * tl.sigmoid(2.0 * {0}) - 1.0)", "fma": "({0} * {1} + {2})"}


def _pow(x: str, e: float) -> str:
    if e == int(e) and 0 <= e <= 4:
        return "(" + " * ".join([x] * int(e)) + ")" if e else "1.0"
    if e == 0.5:
        return f"tl.sqrt({x})"
    return f"tl.exp({flit(e)} * tl.log({x}))"


def render(expr: S.Expr, args: list[str], out: DType) -> str:
    """Triton source of a scalar expression over operand expressions `args`; casts convert to `out`."""
    def r(n: S.Expr) -> str:
        if n.fn == "arg":
            return args[int(n.value or 0)]
        if n.fn == "const":
            return literal(float(n.value or 0.0), DType.f32)
        a = [r(x) for x in n.args]
        if n.fn in _BINARY:
            return f"({a[0]} {_BINARY[n.fn]} {a[1]})"
        if n.fn == "cast":
            return f"{a[0]}.to({compute_type(out)})"
        if n.fn == "powc":
            return _pow(a[0], float(n.value or 0.0))
        return _CALL[n.fn].format(*a)
    return r(expr)


def op_expr(op: Op, a: list[str]) -> str:
    """One elementwise op applied to operand expressions: its scalar rule, rendered."""
    rule = registry.get(op.name).scalar
    if rule is None:
        raise UnsupportedError(f"no triton expression for op {op.name!r} (not elementwise)")
    return render(rule(op.attrs), a, op.results[0].dtype)
