"""Triton expressions for elementwise IR ops (computed in fp32; tanh/GELU via tl.sigmoid)."""

from __future__ import annotations

import math

from codegen.views import UnsupportedError, View
from mlpc.ir import Op
from mlpc.ops.elementwise import GELU_SAT
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


def op_expr(op: Op, a: list[str]) -> str:
    """One elementwise op applied to operand expressions."""
    n = op.name
    binary = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
    if n in binary:
        return f"({a[0]} {binary[n]} {a[1]})"
    compare = {"greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=", "equal": "=="}
    if n in compare:
        return f"({a[0]} {compare[n]} {a[1]})"
    simple = {
        "maximum": "tl.maximum({0}, {1})",
        "minimum": "tl.minimum({0}, {1})",
        "where": "tl.where({0}, {1}, {2})",
        "neg": "(-{0})",
        "exp": "tl.exp({0})",
        "log": "tl.log({0})",
        "sqrt": "tl.sqrt({0})",
        "square": "({0} * {0})",
        "abs": "tl.abs({0})",
        "sign": "tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, 0.0))",
        "relu": "tl.maximum({0}, 0.0)",
        "relu_grad": "tl.where({0} > 0, {1}, 0.0)",
        "sigmoid": "tl.sigmoid({0})",
        "tanh": "(2.0 * tl.sigmoid(2.0 * {0}) - 1.0)",
    }
    if n in simple:
        return simple[n].format(*a)
    if n == "leaky_relu":
        return f"tl.where({a[0]} > 0, {a[0]}, {a[0]} * {flit(op.attrs['alpha'])})"
    if n == "leaky_relu_grad":
        return f"tl.where({a[0]} > 0, {a[1]}, {a[1]} * {flit(op.attrs['alpha'])})"
    if n == "gelu":  # 0.5 x (1 + tanh(u)) = x * sigmoid(2u)
        c, k = math.sqrt(2.0 / math.pi), 0.044715
        xc = f"tl.minimum(tl.maximum({a[0]}, {-GELU_SAT!r}), {GELU_SAT!r})"  # x^3 cannot overflow
        return f"({a[0]} * tl.sigmoid({2 * c!r} * ({xc} + {k!r} * {xc} * {xc} * {xc})))"
    if n == "pow":
        e = float(op.attrs["exponent"])
        if e == int(e) and 0 <= e <= 4:
            return "(" + " * ".join([a[0]] * int(e)) + ")" if e else "1.0"
        if e == 0.5:
            return f"tl.sqrt({a[0]})"
        return f"tl.exp({flit(e)} * tl.log({a[0]}))"
    if n == "cast":
        return f"{a[0]}.to({compute_type(op.result.dtype)})"
    raise UnsupportedError(f"no triton expression for elementwise op {n!r}")
