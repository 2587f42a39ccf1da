"""Tracing: Python code on `Tensor`s records typed ops into a graph, tagged with the user's line."""

from __future__ import annotations

import abc
import linecache
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import DType, TensorType

_PROJECT_DIRS = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (__file__, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "passes", "x"))
)


def user_location() -> str:
    """`file.py:line` of the innermost stack frame outside mlpc itself."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if frame.f_code.co_filename.startswith("<frozen"):
            return ""  # reached the interpreter's own start-up code: no user line
        if not fname.startswith(_PROJECT_DIRS):
            return f"{os.path.basename(fname)}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return ""


class Tracer:
    """Collects ops while user code runs on Tensors; one per traced graph."""

    _stack: list["Tracer"] = []

    def __init__(self) -> None:
        self.builder = Builder()
        self.inputs: list[Input] = []
        self.param_tensors: dict[int, Tensor] = {}
        self.module_locs: list[str] = []  # construction sites of the built-in modules being called
        self.training = False  # a training step (Dropout active) rather than a forward pass
        self.seed = 0  # keys the random streams of a training step (mlpc/ops/random.py)
        self.random_streams = 0  # random ops traced so far: the next one's stream number

    def __enter__(self) -> "Tracer":
        Tracer._stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        Tracer._stack.pop()

    @staticmethod
    def current() -> "Tracer":
        if not Tracer._stack:
            raise RuntimeError("no graph is being traced: call this inside mlpc.compile / mlpc.trace")
        return Tracer._stack[-1]

    def input(self, name: str, type: TensorType, role: str = "data") -> "Tensor":
        v = Value(type, name)
        self.inputs.append(Input(name, v, role))
        return Tensor(v)

    def emit(self, name: str, *operands: "Tensor", **attrs: Any) -> Any:
        loc = self.module_locs[-1] if self.module_locs and self.module_locs[-1] else user_location()
        self.builder.loc = loc
        try:
            out = self.builder.op(name, *[t.value for t in operands], **attrs)
        except ShapeError as e:
            text = linecache.getline(_find_file(loc), _line_no(loc)).strip() if loc else ""
            raise ShapeError(f"{e}" + (f"\n    {text}" if text else "")) from None
        if isinstance(out, tuple):
            return tuple(Tensor(v) for v in out)
        return Tensor(out)

    def graph(self, name: str, outputs: dict[str, "Tensor"]) -> Graph:
        return Graph(name, list(self.inputs), list(self.builder.ops),
                     [Output(k, as_tensor(t).value) for k, t in outputs.items()])


def _line_no(loc: str) -> int:
    try:
        return int(loc.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _find_file(loc: str) -> str:
    base = loc.rsplit(":", 1)[0]
    frame = sys._getframe(1)
    while frame is not None:
        if os.path.basename(frame.f_code.co_filename) == base:
            return frame.f_code.co_filename
        frame = frame.f_back  # type: ignore[assignment]
    return base


def as_tensor(x: Any, like: "Tensor | None" = None) -> "Tensor":
    """Turn a Tensor, Parameter or Python/NumPy scalar into a traced Tensor."""
    if isinstance(x, Tensor):
        return x
    if hasattr(x, "traced"):
        return x.traced()
    if isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool):
        dtype = like.dtype if like is not None else DType.f32
        return Tracer.current().emit("full", value=float(x), dtype=dtype.value, shape=())
    raise TypeError(f"cannot use {type(x).__name__} as a traced tensor")


class TensorOps(abc.ABC):
    """Operator overloading shared by Tensor and nn.Parameter."""

    @abc.abstractmethod
    def traced(self) -> "Tensor":
        """The traced Tensor this object stands for in the current trace."""

    def _bin(self, name: str, other: Any, reverse: bool = False) -> "Tensor":
        me = self.traced()
        o = as_tensor(other, like=me)
        a, b = (o, me) if reverse else (me, o)
        return Tracer.current().emit(name, a, b)

    def __add__(self, o: Any) -> "Tensor":
        return self._bin("add", o)

    def __radd__(self, o: Any) -> "Tensor":
        return self._bin("add", o, True)

    def __sub__(self, o: Any) -> "Tensor":
        return self._bin("sub", o)

    def __rsub__(self, o: Any) -> "Tensor":
        return self._bin("sub", o, True)

    def __mul__(self, o: Any) -> "Tensor":
        return self._bin("mul", o)

    def __rmul__(self, o: Any) -> "Tensor":
        return self._bin("mul", o, True)

    def __truediv__(self, o: Any) -> "Tensor":
        return self._bin("div", o)

    def __rtruediv__(self, o: Any) -> "Tensor":
        return self._bin("div", o, True)

    def __matmul__(self, o: Any) -> "Tensor":
        return Tracer.current().emit("matmul", self.traced(), as_tensor(o))

    def __rmatmul__(self, o: Any) -> "Tensor":
        return Tracer.current().emit("matmul", as_tensor(o), self.traced())

    def __neg__(self) -> "Tensor":
        return Tracer.current().emit("neg", self.traced())

    def __pow__(self, exponent: float) -> "Tensor":
        if not isinstance(exponent, (int, float)):
            raise TypeError("only constant exponents are supported: x ** 2.0")
        if exponent == 2:
            return Tracer.current().emit("square", self.traced())
        return Tracer.current().emit("pow", self.traced(), exponent=float(exponent))

    def __gt__(self, o: Any) -> "Tensor":
        return self._bin("greater", o)

    def __lt__(self, o: Any) -> "Tensor":
        return self._bin("less", o)

    @property
    def T(self) -> "Tensor":
        return Tracer.current().emit("transpose", self.traced(), perm=())

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tensor":
        return _reduce("sum", self.traced(), axis, keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tensor":
        return _reduce("mean", self.traced(), axis, keepdims)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tensor":
        return _reduce("max", self.traced(), axis, keepdims)

    def reshape(self, *shape: int) -> "Tensor":
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        t = self.traced()
        if dims.count(-1) == 1:
            known = int(np.prod([d for d in dims if d != -1]))
            dims = tuple(t.value.type.size // max(known, 1) if d == -1 else d for d in dims)
        return Tracer.current().emit("reshape", t, shape=dims)


def _reduce(name: str, t: "Tensor", axis: int | Sequence[int] | None, keepdims: bool) -> "Tensor":
    if axis is None:
        axes: tuple[int, ...] = tuple(range(len(t.shape)))
    elif isinstance(axis, int):
        axes = (axis,)
    else:
        axes = tuple(axis)
    return Tracer.current().emit(name, t, axes=axes, keepdims=keepdims)


class Tensor(TensorOps):
    """A value being traced: shape and dtype are known, contents are not."""

    def __init__(self, value: Value) -> None:
        self.value = value

    def traced(self) -> "Tensor":
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> DType:
        return self.value.dtype

    def __repr__(self) -> str:
        return f"Tensor({self.value.type})"

    def __bool__(self) -> bool:
        raise TypeError("a traced Tensor has no truth value: control flow cannot depend on data")


def trace(fn: Callable[..., Any], inputs: dict[str, TensorType], name: str = "f",
          params: dict[str, TensorType] | None = None) -> Graph:
    """Trace `fn(**tensors)` into a graph; `params` become inputs with the param role.

    The function returns a Tensor (output "out") or a dict of named Tensors.
    """
    with Tracer() as tr:
        args = {k: tr.input(k, t) for k, t in inputs.items()}
        for k, t in (params or {}).items():
            args[k] = tr.input(k, t, "param")
        out = fn(**args)
        outs = out if isinstance(out, dict) else {"out": out}
        return tr.graph(name, outs)
