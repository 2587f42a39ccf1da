"""The IR data structures: values, ops and graphs (typed SSA, ops in topological order)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from mlpc.types import TensorType

ROLES = ("data", "param", "state", "hyper")


class Value:
    """An SSA value: a type, an optional hint for printing, and its producer (None for inputs)."""

    __slots__ = ("type", "hint", "producer")

    def __init__(self, type: TensorType, hint: str = "", producer: "Op | None" = None) -> None:
        self.type = type
        self.hint = hint
        self.producer = producer

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):  # -> DType
        return self.type.dtype

    def __repr__(self) -> str:
        return f"Value({self.hint or hex(id(self))}: {self.type})"


@dataclass(eq=False)
class Op:
    """One operation: registry name, operands, results, attributes and the user's source line."""

    name: str
    operands: list[Value]
    results: list[Value]
    attrs: dict[str, Any] = field(default_factory=dict)
    loc: str = ""

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"op {self.name} has {len(self.results)} results, not one")
        return self.results[0]

    def __repr__(self) -> str:
        return f"Op({self.name}, {len(self.operands)} operands, {len(self.results)} results)"


@dataclass(frozen=True)
class Input:
    """A graph input: its value, a unique name, and its role (data, param, state, or hyper: a runtime
    hyperparameter scalar that no op updates)."""

    name: str
    value: Value
    role: str = "data"


@dataclass(frozen=True)
class Output:
    """A named graph output. An output named like a param/state input is that input's new value."""

    name: str
    value: Value


@dataclass(eq=False)
class Graph:
    """One function: named inputs, ops in topological order, named outputs."""

    name: str
    inputs: list[Input]
    ops: list[Op]
    outputs: list[Output]

    def input(self, name: str) -> Input:
        for i in self.inputs:
            if i.name == name:
                return i
        raise KeyError(f"graph @{self.name} has no input named {name!r}")

    def output(self, name: str) -> Output:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(f"graph @{self.name} has no output named {name!r}")

    def has_output(self, name: str) -> bool:
        return any(o.name == name for o in self.outputs)

    def inputs_with_role(self, role: str) -> list[Input]:
        return [i for i in self.inputs if i.role == role]

    def values(self) -> Iterator[Value]:
        for i in self.inputs:
            yield i.value
        for op in self.ops:
            yield from op.results

    def users(self) -> dict[Value, list[Op]]:
        """Map each value to the ops that read it."""
        out: dict[Value, list[Op]] = {v: [] for v in self.values()}
        for op in self.ops:
            for v in op.operands:
                out.setdefault(v, []).append(op)
        return out

    def replace(self, ops: Iterable[Op] | None = None, outputs: Iterable[Output] | None = None,
                inputs: Iterable[Input] | None = None) -> "Graph":
        """A new graph sharing this one's values, with some parts swapped."""
        return Graph(self.name, list(self.inputs if inputs is None else inputs),
                     list(self.ops if ops is None else ops),
                     list(self.outputs if outputs is None else outputs))

    def __str__(self) -> str:
        from mlpc.printer import print_graph

        return print_graph(self)


def substitute(graph: Graph, mapping: dict[Value, Value]) -> Graph:
    """Rewrite every use of a key value into a use of its mapped value. Ops and their results are
    copied, so the input graph is left as it was (its values keep their producers)."""
    fresh: dict[Value, Value] = {}

    def m(v: Value) -> Value:
        while v in mapping:
            v = mapping[v]
        return fresh.get(v, v)

    ops = []
    for op in graph.ops:
        new = Op(op.name, [m(v) for v in op.operands], [Value(r.type, r.hint) for r in op.results],
                 dict(op.attrs), op.loc)
        for old, r in zip(op.results, new.results):
            r.producer = new
            fresh[old] = r
        ops.append(new)
    outs = [Output(o.name, m(o.value)) for o in graph.outputs]
    return graph.replace(ops=ops, outputs=outs)


def structurally_equal(a: Graph, b: Graph, check_loc: bool = True) -> bool:
    """True when two graphs have the same signature, ops, attributes, types and dataflow."""
    if a.name != b.name or len(a.inputs) != len(b.inputs) or len(a.ops) != len(b.ops):
        return False
    vmap: dict[Value, Value] = {}
    for x, y in zip(a.inputs, b.inputs):
        if (x.name, x.role, x.value.type) != (y.name, y.role, y.value.type):
            return False
        vmap[x.value] = y.value
    for p, q in zip(a.ops, b.ops):
        if p.name != q.name or not _same_attrs(p.attrs, q.attrs) or (check_loc and p.loc != q.loc):
            return False
        if len(p.operands) != len(q.operands) or len(p.results) != len(q.results):
            return False
        if any(vmap.get(u) is not w for u, w in zip(p.operands, q.operands)):
            return False
        for r, s in zip(p.results, q.results):
            if r.type != s.type:
                return False
            vmap[r] = s
    if len(a.outputs) != len(b.outputs):
        return False
    return all(o.name == p.name and vmap.get(o.value) is p.value
               for o, p in zip(a.outputs, b.outputs))


def same_attr(a: Any, b: Any) -> bool:
    """Attribute equality that tells -0.0 from 0.0 (x / -0.0 is -inf), True from 1, and NaN equal to itself."""
    if isinstance(a, float) and isinstance(b, float):
        if a != a and b != b:
            return True  # NaN attributes (e.g. full {value = nan}) are equal to themselves
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_attr(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _same_attrs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same_attr(a[k], b[k]) for k in a)


def clone(graph: Graph) -> Graph:
    """A deep copy with fresh Values and Ops, so a pass can never disturb its input graph."""
    vmap: dict[Value, Value] = {}
    inputs = []
    for i in graph.inputs:
        v = Value(i.value.type, i.value.hint)
        vmap[i.value] = v
        inputs.append(Input(i.name, v, i.role))
    ops = []
    for op in graph.ops:
        results = [Value(r.type, r.hint) for r in op.results]
        new = Op(op.name, [vmap[v] for v in op.operands], results, dict(op.attrs), op.loc)
        for old, r in zip(op.results, results):
            r.producer = new
            vmap[old] = r
        ops.append(new)
    return Graph(graph.name, inputs, ops, [Output(o.name, vmap[o.value]) for o in graph.outputs])
