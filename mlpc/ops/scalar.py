"""Scalar expression form: an elementwise op's math written once, rendered by NumPy, LLVM and Triton."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np

# Primitive -> arity. "arg" reads operand `value` (an index); "const" is the number `value`;
# "cast" converts to the op's result dtype; "powc" raises to the constant exponent `value`.
PRIMITIVES: dict[str, int] = {
    "arg": 0, "const": 0,
    "add": 2, "sub": 2, "mul": 2, "div": 2, "max": 2, "min": 2,
    "gt": 2, "ge": 2, "lt": 2, "le": 2, "eq": 2,
    "neg": 1, "exp": 1, "log": 1, "sqrt": 1, "tanh": 1, "abs": 1, "cast": 1, "powc": 1,
    "fma": 3, "select": 3,
}


@dataclass(frozen=True)
class Expr:
    """One node of a scalar expression tree; arithmetic operators build new nodes."""

    fn: str
    args: tuple["Expr", ...] = ()
    value: float | int | None = None

    def __post_init__(self) -> None:
        if PRIMITIVES.get(self.fn) != len(self.args):
            raise ValueError(f"scalar primitive {self.fn!r} with {len(self.args)} arguments")

    def __add__(self, o: "Num") -> "Expr":
        return Expr("add", (self, lift(o)))

    def __radd__(self, o: "Num") -> "Expr":
        return Expr("add", (lift(o), self))

    def __sub__(self, o: "Num") -> "Expr":
        return Expr("sub", (self, lift(o)))

    def __rsub__(self, o: "Num") -> "Expr":
        return Expr("sub", (lift(o), self))

    def __mul__(self, o: "Num") -> "Expr":
        return Expr("mul", (self, lift(o)))

    def __rmul__(self, o: "Num") -> "Expr":
        return Expr("mul", (lift(o), self))

    def __truediv__(self, o: "Num") -> "Expr":
        return Expr("div", (self, lift(o)))

    def __rtruediv__(self, o: "Num") -> "Expr":
        return Expr("div", (lift(o), self))

    def __neg__(self) -> "Expr":
        return Expr("neg", (self,))


Num = Union[Expr, float, int]


def lift(v: Num) -> Expr:
    return v if isinstance(v, Expr) else Expr("const", (), float(v))


def arg(i: int) -> Expr:
    return Expr("arg", (), i)


X, Y, Z = arg(0), arg(1), arg(2)


def _fn(name: str) -> Callable[..., Expr]:
    def build(*a: Num) -> Expr:
        return Expr(name, tuple(lift(v) for v in a))
    build.__name__ = name
    return build


exp, log, sqrt, tanh, abs_, cast = _fn("exp"), _fn("log"), _fn("sqrt"), _fn("tanh"), _fn("abs"), _fn("cast")
maximum, minimum, fma, select = _fn("max"), _fn("min"), _fn("fma"), _fn("select")
gt, ge, lt, le, eq = _fn("gt"), _fn("ge"), _fn("lt"), _fn("le"), _fn("eq")


def powc(x: Num, exponent: float) -> Expr:
    return Expr("powc", (lift(x),), float(exponent))


def sigmoid(x: Num) -> Expr:
    """1 / (1 + e^-x): 0 for x -> -inf, 1 for x -> +inf, never NaN for finite x."""
    return 1.0 / (1.0 + exp(-lift(x)))


# erf as a rational function (odd numerator, even denominator in x^2) on x clamped to [-4, 4]; outside
# it erf is +-1 in float32. Coefficients: the float32 minimax fit Eigen and XLA use (a few ulp).
ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
             -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
            -1.42647390514189e-02)


def erf(x: Num) -> Expr:
    xc = maximum(minimum(x, 4.0), -4.0)
    x2 = xc * xc
    p: Expr = lift(ERF_ALPHA[0])
    for c in ERF_ALPHA[1:]:
        p = fma(x2, p, c)
    q: Expr = lift(ERF_BETA[0])
    for c in ERF_BETA[1:]:
        q = fma(x2, q, c)
    return xc * (p / q)  # not (xc p) / q: xc p underflows (FTZ: to 0) for x near 2^-126


# ---- NumPy evaluation ----------------------------------------------------------------------------

_NP: dict[str, Callable[..., Any]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "max": np.maximum, "min": np.minimum,
    "gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal, "eq": np.equal,
    "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh,
    "fma": lambda a, b, c: a * b + c, "select": np.where,
}


def evaluate(e: Expr, args: Sequence[Any], dtype: Any) -> Any:
    """The expression on NumPy arrays; constants and casts take `dtype` (a NumPy float dtype)."""
    memo: dict[int, Any] = {}

    def ev(n: Expr) -> Any:
        key = id(n)
        if key in memo:
            return memo[key]
        if n.fn == "arg":
            out = args[int(n.value or 0)]
        elif n.fn == "const":
            out = np.asarray(n.value, dtype)
        elif n.fn == "cast":
            out = np.asarray(ev(n.args[0])).astype(dtype)
        elif n.fn == "powc":
            out = np.power(ev(n.args[0]), np.asarray(n.value, dtype))
        else:
            out = _NP[n.fn](*(ev(a) for a in n.args))
        memo[key] = out
        return out
    return ev(e)


def primitives_used(e: Expr) -> set[str]:
    out = {e.fn}
    for a in e.args:
        out |= primitives_used(a)
    return out


def _reads_below(n: Expr, limit: int) -> bool:
    if n.fn == "arg":
        return int(n.value or 0) < limit
    return any(_reads_below(a, limit) for a in n.args)


def count_ops(exprs: Sequence[Expr], per_element_args: int | None = None) -> int:
    """Arithmetic nodes (not arguments or constants) in the expressions, shared subtrees once. With
    `per_element_args`, only nodes reading one of the first that many arguments count (the others
    combine per-step scalars: computed once, not per element)."""
    seen: set[int] = set()

    def walk(n: Expr) -> int:
        if id(n) in seen or n.fn in ("arg", "const"):
            return 0
        seen.add(id(n))
        here = per_element_args is None or _reads_below(n, per_element_args)
        return int(here) + sum(walk(a) for a in n.args)
    return sum(walk(e) for e in exprs)

