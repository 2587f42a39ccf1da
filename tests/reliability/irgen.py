"""A hypothesis strategy for random, valid IR graphs built from the op registry (for print/parse/verify fuzzing)."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from mlpc.errors import ShapeError
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, all_ops
from mlpc.ops.optim import split_attrs
from mlpc.types import DType, TensorType

FLOATS = (DType.f32, DType.f64)


def _unary_ops() -> tuple[str, ...]:
    """Elementwise ops of one float operand without attributes, from the registry (new ops join)."""
    out = []
    for name, d in sorted(all_ops().items()):
        if d.kind != "elementwise" or d.attrs:
            continue
        try:
            d.infer([TensorType(DType.f32, (2,))], {})
        except ShapeError:
            continue
        out.append(name)
    return tuple(out)


UNARY = _unary_ops()
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum")
COMPARE = ("greater", "greater_equal", "less", "less_equal", "equal")
NAME_CHARS = string.ascii_letters + string.digits + "_."
ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
ATTR_FLOATS = st.one_of(st.floats(allow_nan=False, width=64), st.sampled_from([0.0, -0.0, 1.0, 1e-300, 1e300]))


def _shape(draw: Any, rank: int | None = None) -> tuple[int, ...]:
    r = draw(st.integers(0, 3)) if rank is None else rank
    return tuple(draw(st.integers(1, 4)) for _ in range(r))


class _Gen:
    def __init__(self, draw: Any, floats: tuple[DType, ...] = FLOATS) -> None:
        self.draw = draw
        self.float_types = floats
        self.b = Builder()
        self.inputs: list[Input] = []
        self.pool: list[Value] = []
        self.names: set[str] = set()

    def name(self) -> str:
        while True:
            n = self.draw(st.text(alphabet=NAME_CHARS, min_size=1, max_size=8))
            if n not in self.names:
                self.names.add(n)
                return n

    def new_input(self, t: TensorType, role: str | None = None) -> Value:
        role = role or self.draw(st.sampled_from(["data", "param", "state"]))
        v = Value(t, "")
        self.inputs.append(Input(self.name(), v, role))
        self.pool.append(v)
        return v

    def pick(self, pred: Any = lambda v: True) -> Value | None:
        cands = [v for v in self.pool if pred(v)]
        return self.draw(st.sampled_from(cands)) if cands else None

    def floats(self) -> Value:
        v = self.pick(lambda v: v.dtype.is_float)
        if v is None:
            v = self.new_input(TensorType(self.draw(st.sampled_from(self.float_types)), _shape(self.draw)))
        return v

    def emit(self, *args: Any, **kw: Any) -> None:
        self.b.loc = self.draw(st.one_of(st.just(""), ODD_TEXT))
        out = self.b.op(*args, **kw)
        self.pool.extend(out if isinstance(out, tuple) else (out,))

    def update(self, name: str, p: Value, g: Value, state: list[Value], t: Value, **options: Any) -> None:
        """An update op whose hyperparameters are constants or (drawn) scalar inputs of role hyper."""
        attrs, values = split_attrs(name, options)
        hyper = []
        for v in values.values():
            if self.draw(st.booleans()):
                hyper.append(self.b.scalar(v, p))
            else:
                hyper.append(Value(TensorType(p.dtype, ()), ""))
                self.inputs.append(Input(self.name(), hyper[-1], "hyper"))
        self.emit(name, p, g, *state, t, *hyper, **attrs)

    def step(self) -> None:
        d = self.draw
        kind = d(st.sampled_from(["unary", "binary", "compare", "reduce", "shape", "matmul", "full", "cast",
                                  "softmax", "loss", "grad", "optimizer", "one_hot"]))
        if kind == "unary":
            x = self.floats()
            op = d(st.sampled_from(UNARY + ("leaky_relu", "pow")))
            if op == "leaky_relu":
                self.emit(op, x, alpha=d(ATTR_FLOATS))
            elif op == "pow":
                self.emit(op, x, exponent=d(ATTR_FLOATS))
            else:
                self.emit(op, x)
        elif kind in ("binary", "compare"):
            x = self.floats()
            y = self.pick(lambda v: v.dtype == x.dtype and _broadcasts(v.shape, x.shape))
            if y is None or d(st.booleans()):
                y = self.b.op("full", value=d(ATTR_FLOATS), dtype=x.dtype.value,
                              shape=x.shape[d(st.integers(0, len(x.shape))):])
            pair = (x, y) if d(st.booleans()) else (y, x)
            if kind == "binary":
                self.emit(d(st.sampled_from(BINARY)), *pair)
            else:
                cond = self.b.op(d(st.sampled_from(COMPARE)), *pair)
                self.emit("where", cond, *pair)
        elif kind == "reduce":
            x = self.floats()
            r = x.type.rank
            axes = d(st.lists(st.integers(-r, r - 1), unique_by=lambda a: a % r, max_size=r)) if r else []
            self.emit(d(st.sampled_from(["sum", "mean", "max"])), x, axes=axes, keepdims=d(st.booleans()))
        elif kind == "shape":
            x = self.floats()
            how = d(st.sampled_from(["reshape", "transpose", "broadcast_to"]))
            if how == "reshape":
                n = x.type.size
                self.emit("reshape", x, shape=d(st.sampled_from([(n,), (1, n), (n, 1)])))
            elif how == "transpose":
                self.emit("transpose", x, perm=d(st.one_of(st.just(()), st.permutations(range(x.type.rank)))))
            else:
                self.emit("broadcast_to", x, shape=(d(st.integers(1, 3)),) + x.shape)
        elif kind == "matmul":
            ta, tb = d(st.booleans()), d(st.booleans())
            a = self.pick(lambda v: v.dtype.is_float and v.type.rank == 2)
            if a is None:
                a = self.new_input(TensorType(d(st.sampled_from(self.float_types)), _shape(d, 2)))
            k = a.shape[0] if ta else a.shape[1]
            n = d(st.integers(1, 4))
            bshape = (n, k) if tb else (k, n)
            bt = TensorType(a.dtype, bshape)
            b = self.pick(lambda v: v.type == bt) or self.new_input(bt)
            self.emit("matmul", a, b, transpose_a=ta, transpose_b=tb)
        elif kind == "full":
            dt = d(st.sampled_from(self.float_types + (DType.i32,)))
            specials = st.sampled_from([float("inf"), float("-inf"), float("nan")])
            value = float(d(st.integers(-3, 3))) if dt == DType.i32 else d(st.one_of(ATTR_FLOATS, specials))
            self.emit("full", value=value, dtype=dt.value, shape=_shape(d))
        elif kind == "cast":
            x = self.floats()
            self.emit("cast", x, dtype=d(st.sampled_from([t.value for t in self.float_types])))
        elif kind == "softmax":
            x = self.pick(lambda v: v.dtype.is_float and v.type.rank >= 1) or self.new_input(
                TensorType(DType.f32, _shape(d, 2)))
            self.emit(d(st.sampled_from(["softmax", "log_softmax"])), x)
        elif kind == "loss":
            x = self.pick(lambda v: v.dtype.is_float and v.type.rank == 2) or self.new_input(
                TensorType(DType.f32, _shape(d, 2)))
            if d(st.booleans()):
                labels = self.new_input(TensorType(DType.i32, (x.shape[0],)), "data")
                self.emit("softmax_cross_entropy", x, labels)
                if d(st.booleans()):
                    g = self.b.op("full", value=1.0, dtype=x.dtype.value, shape=())
                    self.emit("softmax_cross_entropy_grad", x, labels, g)
            else:
                t = self.pick(lambda v: v.type == x.type and v is not x) or self.new_input(x.type, "data")
                self.emit("mse", x, t)
        elif kind == "grad":
            x = self.floats()
            g = self.pick(lambda v: v.type == x.type and v is not x) or self.new_input(x.type)
            if d(st.booleans()):
                self.emit("relu_grad", x, g)
            else:
                self.emit("leaky_relu_grad", x, g, alpha=d(ATTR_FLOATS))
        elif kind == "optimizer":
            p = self.floats()
            g = self.pick(lambda v: v.type == p.type and v is not p) or self.new_input(p.type)
            step_t = TensorType(DType.i32, ())
            t = self.pick(lambda v: v.type == step_t) or self.new_input(step_t, "state")
            which = d(st.sampled_from(["sgd", "sgd_momentum", "momentum", "adam"]))
            lr = d(st.floats(1e-6, 1.0))
            if which == "sgd":
                self.update("sgd_update", p, g, [], t, lr=lr, weight_decay=d(st.sampled_from([0.0, 0.1])))
            elif which == "sgd_momentum":
                self.update("sgd_update", p, g, [self.new_input(p.type, "state")], t, lr=lr, momentum=0.9,
                            nesterov=d(st.booleans()))
            elif which == "momentum":
                self.update("momentum_update", p, g, [self.new_input(p.type, "state")], t, lr=lr,
                            unbiased=d(st.booleans()))
            else:
                self.update("adam_update", p, g, [self.new_input(p.type, "state"), self.new_input(p.type, "state")],
                            t, lr=lr, bias_correction=d(st.booleans()), decoupled=d(st.booleans()))
        else:
            labels = self.pick(lambda v: v.dtype == DType.i32 and v.type.rank <= 2) or self.new_input(
                TensorType(DType.i32, _shape(d)), "data")
            self.emit("one_hot", labels, num_classes=d(st.integers(1, 5)),
                      dtype=d(st.sampled_from([t.value for t in self.float_types])))


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """True when `a` broadcasts into `b` without changing b's shape."""
    if len(a) > len(b):
        return False
    return all(x in (1, y) for x, y in zip(reversed(a), reversed(b)))


OUTPUT_NAMES = st.one_of(st.text(alphabet=NAME_CHARS, min_size=1, max_size=8), ODD_TEXT.filter(bool),
                         st.sampled_from(["return", "func", "loc", "true", "nan", "data", "param", "loss", "t"]))


@st.composite
def graphs(draw: Any, max_ops: int = 20, floats: tuple[DType, ...] = FLOATS) -> Graph:
    """A random valid graph: inputs of every role, ops from every op family, odd names and locations."""
    g = _Gen(draw, floats)
    for _ in range(draw(st.integers(1, 3))):
        g.new_input(TensorType(draw(st.sampled_from(floats)), _shape(draw)))
    for _ in range(draw(st.integers(1, max_ops))):
        g.step()
    produced = [v for op in g.b.ops for v in op.results]
    chosen = draw(st.lists(st.sampled_from(produced or g.pool), min_size=1, max_size=5))
    outs, used = [], {i.name for i in g.inputs}
    for v in chosen:
        n = draw(OUTPUT_NAMES)
        if n in used:
            continue
        used.add(n)
        outs.append(Output(n, v))
    if not outs:
        outs.append(Output("out." + str(len(used)), chosen[0]))
    fname = draw(st.text(alphabet=NAME_CHARS, min_size=1, max_size=6))
    return Graph(fname, g.inputs, g.b.ops, outs)
