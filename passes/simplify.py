"""Cleanup passes: dead-code elimination, CSE, constant folding and algebraic identities."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mlpc.interpreter import run_op
from mlpc.ir import Graph, Op, Output, Value
from mlpc.ops import get
from passes.manager import register_pass

Rewrite = Callable[[Op, dict[Value, Value]], "Value | None"]


def _resolve(v: Value, mapping: dict[Value, Value]) -> Value:
    while v in mapping:
        v = mapping[v]
    return v


def _remapped(op: Op, mapping: dict[Value, Value]) -> Op:
    """`op` reading the replacement of each remapped operand: a new Op with fresh results (mapped from
    the old ones) when something changed, so the input graph's values keep their producers."""
    operands = [_resolve(v, mapping) for v in op.operands]
    if operands == op.operands:
        return op
    new = Op(op.name, operands, [Value(r.type, r.hint) for r in op.results], dict(op.attrs), op.loc)
    for old, r in zip(op.results, new.results):
        r.producer = new
        mapping[old] = r
    return new


def _rebuild(graph: Graph, rewrite: Rewrite) -> Graph:
    """Walk ops in order; `rewrite(op)` may return a Value that replaces the op's single result."""
    mapping: dict[Value, Value] = {}
    ops: list[Op] = []
    for op in graph.ops:
        op = _remapped(op, mapping)
        replacement = rewrite(op, mapping) if len(op.results) == 1 else None
        if replacement is not None and replacement is not op.result:
            mapping[op.result] = replacement
            if replacement.producer is not None and replacement.producer not in ops and replacement.producer is not op:
                ops.append(replacement.producer)
            continue
        ops.append(op)
    outs = [Output(o.name, _resolve(o.value, mapping)) for o in graph.outputs]
    return graph.replace(ops=ops, outputs=outs)


@register_pass("dce")
def dce(graph: Graph) -> Graph:
    """Remove ops whose results no output needs."""
    live = {o.value for o in graph.outputs}
    keep: list[Op] = []
    for op in reversed(graph.ops):
        if any(r in live for r in op.results):
            keep.append(op)
            live.update(op.operands)
    keep.reverse()
    return graph.replace(ops=keep)


def _key(op: Op) -> tuple[Any, ...]:
    return (op.name, tuple(id(v) for v in op.operands), repr(sorted(op.attrs.items())),
            tuple(r.type for r in op.results))


@register_pass("cse")
def cse(graph: Graph) -> Graph:
    """Merge ops that compute the same thing from the same operands."""
    seen: dict[tuple[Any, ...], Op] = {}
    mapping: dict[Value, Value] = {}
    ops: list[Op] = []
    for op in graph.ops:
        op = _remapped(op, mapping)
        k = _key(op)
        if k in seen:
            for old, new in zip(op.results, seen[k].results):
                mapping[old] = new
            continue
        seen[k] = op
        ops.append(op)
    outs = [Output(o.name, _resolve(o.value, mapping)) for o in graph.outputs]
    return graph.replace(ops=ops, outputs=outs)


def _splat(v: Value) -> float | None:
    """The fill value of a `full` constant, else None."""
    p = v.producer
    if p is not None and p.name == "full":
        return float(p.attrs["value"])
    return None


def _full(op: Op, value: float) -> Value:
    t = op.result.type
    new = Op("full", [], [Value(t)], {"value": float(value), "dtype": t.dtype.value, "shape": t.shape}, op.loc)
    new.result.producer = new
    return new.result


@register_pass("fold")
def fold(graph: Graph) -> Graph:
    """Evaluate elementwise and shape ops whose operands are all splat constants."""

    def rewrite(op: Op, mapping: dict[Value, Value]) -> Value | None:
        if op.name == "full" or not op.operands:
            return None
        kind = get(op.name).kind
        maybe = [_splat(v) for v in op.operands]
        values = [v for v in maybe if v is not None]
        if len(values) != len(maybe):
            return None
        if kind == "elementwise":
            args = [np.asarray(v, dtype=o.dtype.numpy) for v, o in zip(values, op.operands)]
            probe = Op(op.name, [Value(o.type.with_shape(())) for o in op.operands],
                       [Value(op.result.type.with_shape(()))], op.attrs)
            with np.errstate(all="ignore"):
                out = run_op(probe, args)[0]
            return _full(op, float(out))
        if op.name in ("reshape", "broadcast_to", "transpose"):
            return _full(op, values[0])
        if op.name in ("sum", "mean", "max"):
            count = op.operands[0].type.size // max(op.result.type.size, 1)
            return _full(op, values[0] * count if op.name == "sum" else values[0])
        return None

    return _rebuild(graph, rewrite)


@register_pass("algebraic")
def algebraic(graph: Graph) -> Graph:
    """x+0, x-0, x*1, x/1, -(-x), and no-op reshape/broadcast/transpose/cast become x."""

    def same(op: Op, v: Value) -> Value | None:
        return v if v.type == op.result.type else None

    def rewrite(op: Op, mapping: dict[Value, Value]) -> Value | None:
        ops = op.operands
        if op.name == "add":
            if _splat(ops[1]) == 0.0:
                return same(op, ops[0])
            if _splat(ops[0]) == 0.0:
                return same(op, ops[1])
        if op.name == "sub" and _splat(ops[1]) == 0.0:
            return same(op, ops[0])
        if op.name == "mul":
            if _splat(ops[1]) == 1.0:
                return same(op, ops[0])
            if _splat(ops[0]) == 1.0:
                return same(op, ops[1])
        if op.name == "div" and _splat(ops[1]) == 1.0:
            return same(op, ops[0])
        if op.name == "neg" and ops[0].producer is not None and ops[0].producer.name == "neg":
            return same(op, ops[0].producer.operands[0])
        if op.name in ("reshape", "broadcast_to", "cast") and ops[0].type == op.result.type:
            return ops[0]
        if op.name == "transpose":
            perm = tuple(op.attrs["perm"]) or tuple(reversed(range(ops[0].type.rank)))
            if perm == tuple(range(ops[0].type.rank)):
                return ops[0]
        if op.name == "reshape" and ops[0].producer is not None and ops[0].producer.name == "reshape":
            inner = ops[0].producer.operands[0]
            if inner.type == op.result.type:
                return inner
        if op.name in ("sum", "mean", "max") and not op.attrs["axes"] and not op.attrs["keepdims"]:
            return same(op, ops[0])
        return None

    return _rebuild(graph, rewrite)


@register_pass("simplify")
def simplify(graph: Graph, max_rounds: int = 8) -> Graph:
    """fold, algebraic, cse and dce to a fixed point."""
    from mlpc.printer import print_graph

    text = print_graph(graph)
    for _ in range(max_rounds):
        graph = dce(cse(algebraic(fold(graph))))
        new_text = print_graph(graph)
        if new_text == text:
            break
        text = new_text
    return graph
