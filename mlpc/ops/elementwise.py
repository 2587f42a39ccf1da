"""Elementwise ops: arithmetic with broadcasting, activations and their derivatives, compares."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ops import scalar as S
from mlpc.ops.registry import Attrs, Builder, FlopRule, OpDef, ScalarRule, register
from mlpc.types import DType, TensorType

GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715
# GELU's tanh argument is computed from x clamped to [-GELU_SAT, GELU_SAT]: at |x| = 12 the argument is
# 71 and tanh is exactly +-1 in float32 and float64 (from |x| ~ 9 on), so nothing changes while x^3 can no
# longer overflow (which made the gradient (1 - tanh^2) * 3kx^2 = 0 * inf = NaN beyond |x| ~ 1.8e19). The
# backends' rule x sigmoid(2u) needs |2u| > 104 there (sigmoid exactly 0, so gelu(x -> -inf) = -0 as
# 0.5x(1 + tanh u) gives): at |x| = 10, 2u = -87.3 and sigmoid was 1.2e-38, so gelu(-3e38) was -4, not -0.
GELU_SAT = 12.0


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            raise ShapeError(f"shapes {list(a)} and {list(b)} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def unbroadcast(b: Builder, g, shape: tuple[int, ...]):
    """Sum a broadcast cotangent back down to `shape`."""
    if g.shape == shape:
        return g
    lead = len(g.shape) - len(shape)
    axes = list(range(lead)) + [lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1]
    s = b.sum(g, axes=axes, keepdims=False) if axes else g
    return b.reshape(s, shape=shape) if s.shape != shape else s


def _same_dtype(types: Sequence[TensorType], name: str) -> None:
    dts = {t.dtype for t in types}
    if len(dts) > 1:
        raise ShapeError(f"{name} needs operands of one dtype, got {', '.join(sorted(d.value for d in dts))}")


def _binary_infer(name: str, out_dtype: DType | None = None):
    def infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if len(types) != 2:
            raise ShapeError(f"{name} takes 2 operands, got {len(types)}")
        _same_dtype(types, name)
        shape = broadcast_shapes(types[0].shape, types[1].shape)
        return [TensorType(out_dtype or types[0].dtype, shape)]
    return infer


def _unary_infer(name: str, float_only: bool = True):
    def infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if len(types) != 1:
            raise ShapeError(f"{name} takes 1 operand, got {len(types)}")
        if float_only and not types[0].dtype.is_float:
            raise ShapeError(f"{name} needs a float operand, got {types[0].dtype.value}")
        return [types[0]]
    return infer


def _grad_infer(name: str):
    """Type rule of `op_grad(x, g)`: two same-typed operands, result like g."""
    def infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if len(types) != 2 or types[0] != types[1]:
            raise ShapeError(f"{name} takes (x, g) of one type, got {[str(t) for t in types]}")
        return [types[1]]
    return infer


def _binary(name: str, ref, vjp, doc: str, scalar: S.Expr, flops: FlopRule = 1) -> None:
    register(OpDef(name, "elementwise", _binary_infer(name), ref, vjp, doc=doc, scalar=lambda a: scalar,
                   flops=flops))


def _unary(name: str, ref, vjp, doc: str, scalar: ScalarRule, flops: FlopRule = 1,
           attrs: Attrs | None = None, activation: bool = False) -> None:
    register(OpDef(name, "elementwise", _unary_infer(name), ref, vjp, attrs or {}, doc, scalar, flops, activation))


# --- binary arithmetic -------------------------------------------------------------------

def _add_vjp(b: Builder, op, cts):
    (g,) = cts
    x, y = op.operands
    return [unbroadcast(b, g, x.shape), unbroadcast(b, g, y.shape)]


def _sub_vjp(b: Builder, op, cts):
    (g,) = cts
    x, y = op.operands
    return [unbroadcast(b, g, x.shape), unbroadcast(b, b.neg(g), y.shape)]


def _mul_vjp(b: Builder, op, cts):
    (g,) = cts
    x, y = op.operands
    return [unbroadcast(b, b.mul(g, y), x.shape), unbroadcast(b, b.mul(g, x), y.shape)]


def _div_vjp(b: Builder, op, cts):
    (g,) = cts
    x, y = op.operands
    gx = b.div(g, y)
    gy = b.neg(b.div(b.mul(gx, x), y))
    return [unbroadcast(b, gx, x.shape), unbroadcast(b, gy, y.shape)]


def _minmax_vjp(compare: str):
    def vjp(b: Builder, op, cts):
        (g,) = cts
        x, y = op.operands
        xb = b.broadcast_to(x, shape=g.shape) if x.shape != g.shape else x
        yb = b.broadcast_to(y, shape=g.shape) if y.shape != g.shape else y
        pick_x = b.op(compare, xb, yb)
        zero = b.zeros_like(g)
        return [unbroadcast(b, b.where(pick_x, g, zero), x.shape),
                unbroadcast(b, b.where(pick_x, zero, g), y.shape)]
    return vjp


X, Y = S.X, S.Y


def _same(e: S.Expr) -> ScalarRule:
    return lambda a: e


_binary("add", np.add, _add_vjp, "x + y with NumPy broadcasting", X + Y)
_binary("sub", np.subtract, _sub_vjp, "x - y with NumPy broadcasting", X - Y)
_binary("mul", np.multiply, _mul_vjp, "x * y with NumPy broadcasting", X * Y)
_binary("div", np.divide, _div_vjp, "x / y with NumPy broadcasting", X / Y)
_binary("maximum", np.maximum, _minmax_vjp("greater_equal"), "elementwise max (ties: gradient to x)",
        S.maximum(X, Y))
_binary("minimum", np.minimum, _minmax_vjp("less_equal"), "elementwise min (ties: gradient to x)",
        S.minimum(X, Y))

for _name, _ref, _cmp in (("greater", np.greater, S.gt), ("greater_equal", np.greater_equal, S.ge),
                          ("less", np.less, S.lt), ("less_equal", np.less_equal, S.le),
                          ("equal", np.equal, S.eq)):
    register(OpDef(_name, "elementwise", _binary_infer(_name, DType.i1), _ref, None,
                   doc=f"{_name} compare, i1 result (not differentiable)", scalar=_same(_cmp(X, Y)),
                   flops=1))


def _where_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 3:
        raise ShapeError(f"where takes (cond, a, b), got {len(types)} operands")
    c, a, bb = types
    if c.dtype != DType.i1:
        raise ShapeError(f"where's condition must be i1, got {c.dtype.value}")
    _same_dtype([a, bb], "where")
    return [TensorType(a.dtype, broadcast_shapes(broadcast_shapes(c.shape, a.shape), bb.shape))]


def _where_vjp(b: Builder, op, cts):
    (g,) = cts
    c, x, y = op.operands
    zero = b.zeros_like(g)
    return [None, unbroadcast(b, b.where(c, g, zero), x.shape),
            unbroadcast(b, b.where(c, zero, g), y.shape)]


register(OpDef("where", "elementwise", _where_infer, np.where, _where_vjp,
               doc="select a where cond else b, with broadcasting", scalar=lambda a: S.select(X, Y, S.Z),
               flops=1))

# --- unary math ----------------------------------------------------------------------------

_unary("neg", np.negative, lambda b, op, cts: [b.neg(cts[0])], "-x", _same(-X))
_unary("exp", np.exp, lambda b, op, cts: [b.mul(cts[0], op.result)], "e^x", _same(S.exp(X)))
_unary("log", np.log, lambda b, op, cts: [b.div(cts[0], op.operands[0])], "natural log", _same(S.log(X)))
_unary("sqrt", np.sqrt, lambda b, op, cts: [b.div(b.mul(cts[0], b.scalar(0.5, op.result)), op.result)],
       "square root", _same(S.sqrt(X)))
_unary("square", np.square,
       lambda b, op, cts: [b.mul(cts[0], b.mul(op.operands[0], b.scalar(2.0, op.result)))], "x * x",
       _same(X * X))
_unary("abs", np.abs, lambda b, op, cts: [b.mul(cts[0], b.sign(op.operands[0]))], "|x|", _same(S.abs_(X)))
_unary("sign", np.sign, lambda b, op, cts: [None], "sign of x (derivative 0)",
       _same(S.select(S.gt(X, 0.0), 1.0, S.select(S.lt(X, 0.0), -1.0, X))))


def _pow_ref(x, exponent):
    return np.power(x, np.asarray(exponent, dtype=x.dtype))


def _pow_vjp(b: Builder, op, cts):
    x = op.operands[0]
    p = op.attrs["exponent"]
    return [b.mul(cts[0], b.mul(b.pow(x, exponent=p - 1.0), b.scalar(p, x)))]


_unary("pow", _pow_ref, _pow_vjp, "x ** exponent (a constant)", lambda a: S.powc(X, a["exponent"]),
       attrs={"exponent": 2.0})

# --- activations -------------------------------------------------------------------------

_unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)),
       lambda b, op, cts: [b.relu_grad(op.operands[0], cts[0])], "max(x, 0)",
       _same(S.select(S.lt(X, 0.0), 0.0, X)), activation=True)
register(OpDef("relu_grad", "elementwise", _grad_infer("relu_grad"),
               lambda x, g: np.where(x > 0, g, np.zeros((), g.dtype)),
               lambda b, op, cts: [None, b.relu_grad(op.operands[0], cts[0])],
               doc="g where x > 0 else 0: the derivative of relu applied to g",
               scalar=_same(S.select(S.gt(X, 0.0), Y, 0.0)), flops=1))


def _leaky_ref(x, alpha):
    return np.where(x > 0, x, x * np.asarray(alpha, x.dtype))


def _leaky_grad_ref(x, g, alpha):
    return np.where(x > 0, g, g * np.asarray(alpha, g.dtype))


_unary("leaky_relu", _leaky_ref,
       lambda b, op, cts: [b.leaky_relu_grad(op.operands[0], cts[0], alpha=op.attrs["alpha"])],
       "x if x > 0 else alpha * x", lambda a: S.select(S.gt(X, 0.0), X, X * a["alpha"]), 2, {"alpha": 0.01},
       True)
register(OpDef("leaky_relu_grad", "elementwise", _grad_infer("leaky_relu_grad"), _leaky_grad_ref,
               lambda b, op, cts: [None, b.leaky_relu_grad(op.operands[0], cts[0], alpha=op.attrs["alpha"])],
               {"alpha": 0.01}, "g if x > 0 else alpha * g",
               lambda a: S.select(S.gt(X, 0.0), Y, Y * a["alpha"]), 2))


def _sigmoid_ref(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))).astype(x.dtype)


def _sigmoid_vjp(b: Builder, op, cts):
    y = op.result
    return [b.mul(cts[0], b.mul(y, b.sub(b.scalar(1.0, y), y)))]


_unary("sigmoid", _sigmoid_ref, _sigmoid_vjp, "1 / (1 + e^-x)", _same(S.sigmoid(X)), 3, activation=True)
_unary("tanh", np.tanh,
       lambda b, op, cts: [b.mul(cts[0], b.sub(b.scalar(1.0, op.result), b.square(op.result)))], "tanh x",
       _same(S.tanh(X)), activation=True)


def _gelu_ref(x):
    c = np.asarray(GELU_C, x.dtype)
    k = np.asarray(GELU_K, x.dtype)
    half = np.asarray(0.5, x.dtype)
    xc = np.clip(x, -GELU_SAT, GELU_SAT).astype(x.dtype)
    return half * x * (1 + np.tanh(c * (xc + k * xc * xc * xc)))


def _gelu_vjp(b: Builder, op, cts):
    """d/dx of the tanh-approximate GELU, written in primitive ops so it differentiates again."""
    x = op.operands[0]
    s = lambda v: b.scalar(v, x)  # noqa: E731
    xc = b.minimum(b.maximum(x, s(-GELU_SAT)), s(GELU_SAT))  # saturated: see GELU_SAT
    x2 = b.square(xc)
    t = b.tanh(b.mul(s(GELU_C), b.add(xc, b.mul(s(GELU_K), b.mul(x2, xc)))))
    left = b.mul(s(0.5), b.add(s(1.0), t))
    dt = b.mul(b.sub(s(1.0), b.square(t)), b.mul(s(GELU_C), b.add(s(1.0), b.mul(s(3 * GELU_K), x2))))
    deriv = b.add(left, b.mul(b.mul(s(0.5), x), dt))
    return [b.mul(cts[0], deriv)]


# 0.5 x (1 + tanh(u)) = x sigmoid(2u), u from x clamped to GELU_SAT like the reference: saturates
# (x -> -inf: -0, x -> inf: x) without NaN and x^3 never overflows
_XC = S.minimum(S.maximum(X, -GELU_SAT), GELU_SAT)
_unary("gelu", _gelu_ref, _gelu_vjp, "tanh-approximate GELU: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))",
       _same(X * S.sigmoid((2 * GELU_C) * (_XC + GELU_K * (_XC * _XC * _XC)))), 8, activation=True)


_erf_ufunc = np.frompyfunc(math.erf, 1, 1)
ERF_D = 2.0 / math.sqrt(math.pi)
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _erf64(x) -> np.ndarray:
    """erf in float64 (math.erf per element; also for rank-0 inputs)."""
    return np.asarray(_erf_ufunc(np.asarray(x, np.float64)), np.float64)


def _erf_ref(x):
    return _erf64(x).astype(x.dtype)


def _erf_vjp(b: Builder, op, cts):
    x = op.operands[0]
    return [b.mul(cts[0], b.mul(b.scalar(ERF_D, x), b.exp(b.neg(b.square(x)))))]


_unary("erf", _erf_ref, _erf_vjp, "the error function (float32: rational fit, a few ulp)", _same(S.erf(X)), 1)


def _gelu_erf_ref(x):
    return (0.5 * x * (1.0 + _erf64(np.asarray(x, np.float64) * SQRT_HALF))).astype(x.dtype)


def _gelu_erf_vjp(b: Builder, op, cts):
    """Phi(x) + x phi(x), in primitive ops; saturates (phi's exp(-x^2/2) -> 0, never NaN for finite x)."""
    x = op.operands[0]
    s = lambda v: b.scalar(v, x)  # noqa: E731
    cdf = b.mul(s(0.5), b.add(s(1.0), b.erf(b.mul(x, s(SQRT_HALF)))))
    pdf = b.mul(s(INV_SQRT_2PI), b.exp(b.mul(s(-0.5), b.square(x))))
    return [b.mul(cts[0], b.add(cdf, b.mul(x, pdf)))]


_unary("gelu_erf", _gelu_erf_ref, _gelu_erf_vjp, "exact GELU: 0.5x(1 + erf(x / sqrt 2)) (PyTorch's default)",
       _same(0.5 * X * (1.0 + S.erf(X * SQRT_HALF))), 5, activation=True)


def _silu_ref(x):
    return (x * _sigmoid_ref(x)).astype(x.dtype)


def _silu_vjp(b: Builder, op, cts):
    """s (1 + x (1 - s)) with s = sigmoid(x): 0 * finite for x -> -inf, never NaN for finite x."""
    x = op.operands[0]
    sg = b.sigmoid(x)
    one = b.scalar(1.0, x)
    return [b.mul(cts[0], b.mul(sg, b.add(one, b.mul(x, b.sub(one, sg)))))]


_unary("silu", _silu_ref, _silu_vjp, "SiLU / swish: x sigmoid(x)", _same(X * S.sigmoid(X)), 4, activation=True)


def _cast_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 1:
        raise ShapeError("cast takes 1 operand")
    try:
        dt = DType(attrs["dtype"])
    except ValueError:
        raise ShapeError(f"unknown dtype {attrs['dtype']!r}") from None
    return [types[0].with_dtype(dt)]


def _cast_vjp(b: Builder, op, cts):
    x = op.operands[0]
    if not x.dtype.is_float or not op.result.dtype.is_float:
        return [None]
    return [b.cast(cts[0], dtype=x.dtype.value)]


register(OpDef("cast", "elementwise", _cast_infer, lambda x, dtype: x.astype(DType(dtype).numpy),
               _cast_vjp, {"dtype": "f32"}, "convert to another dtype", _same(S.cast(X)), 0))
