"""Passes and graph helpers never mutate their input graph: called directly (without the pass manager's
clone), every op keeps its operands, results and attributes, and every value its producer."""

from __future__ import annotations

import pytest

from mlpc.ir import Graph, Input, Output, Value, substitute
from mlpc.ops import Builder
from mlpc.printer import print_graph
from mlpc.types import f32
from passes.manager import get_pass


def redundant_graph() -> Graph:
    """Work for every cleanup pass: a CSE pair, a foldable constant chain, x * 1, double negation."""
    b = Builder()
    x = Value(f32(3, 4), "x")
    w = Value(f32(4, 2), "w")
    one = b.scalar(1.0, x)
    two = b.add(one, b.scalar(1.0, x))
    a1 = b.mul(b.neg(b.neg(x)), one)
    a2 = b.mul(b.neg(b.neg(x)), one)
    h = b.relu(b.matmul(b.add(a1, a2), w))
    loss = b.sum(b.mul(h, two), axes=[0, 1])
    return Graph("g", [Input("x", x), Input("w", w, "param")], b.ops, [Output("loss", loss)])


def snapshot(g: Graph) -> tuple:
    return (print_graph(g), [(id(op), [id(v) for v in op.operands], [id(r) for r in op.results],
                              [id(r.producer) for r in op.results], dict(op.attrs)) for op in g.ops])


@pytest.mark.parametrize("name", ["cse", "fold", "algebraic", "dce", "simplify", "autodiff", "sgd", "adam"])
def test_pass_leaves_its_input_alone(name):
    g = redundant_graph()
    if name in ("sgd", "adam"):
        g = get_pass("autodiff")(g)
    before = snapshot(g)
    get_pass(name)(g)
    assert snapshot(g) == before


def test_substitute_leaves_its_input_alone():
    g = redundant_graph()
    before = snapshot(g)
    x = g.inputs[0].value
    b = Builder()
    out = substitute(g, {x: b.neg(x)})
    assert snapshot(g) == before
    assert all(r.producer is op for op in out.ops for r in op.results)
