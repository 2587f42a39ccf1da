"""reattach_locations: stage text from another graph of the same structure gets this graph's `loc(...)`."""

from __future__ import annotations

from dataclasses import replace

import mlpc
from mlpc import nn
from mlpc.inspection.locations import reattach_locations
from mlpc.ir import Graph
from mlpc.printer import print_graph


def _graph() -> Graph:
    tr = mlpc.compile(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), batch_size=2, backend="numpy")
    return tr.graph("simplified")


def _relocated(g: Graph, loc_of: dict[int, str]) -> Graph:
    """A copy of `g` whose op i has location loc_of.get(i, '') (same structure, other source lines)."""
    ops = [replace(op, loc=loc_of.get(i, "")) for i, op in enumerate(g.ops)]
    return Graph(g.name, g.inputs, ops, g.outputs)


def test_locations_come_from_the_current_graph_annotations_kept() -> None:
    g = _graph()
    old = _relocated(g, {i: f"old.py:{i + 1}" for i in range(len(g.ops))})
    new = _relocated(g, {i: f"new.py:{100 + i}" for i in range(len(g.ops))})
    annotate = {i: f"k{i // 2}" for i in range(len(g.ops))}
    cached = print_graph(old, annotate=annotate) + "// kernels:\n//   k0: [matmul add]\n"
    text = reattach_locations(cached, new)
    assert text == print_graph(new, annotate=annotate) + "// kernels:\n//   k0: [matmul add]\n"
    assert "old.py" not in text


def test_ops_without_a_location_get_none_and_new_locations_appear() -> None:
    g = _graph()
    old = _relocated(g, {0: "old.py:1"})
    new = _relocated(g, {1: "new.py:7"})
    text = reattach_locations(print_graph(old, annotate={0: "k0", 1: "k0"}), new)
    assert text == print_graph(new, annotate={0: "k0", 1: "k0"})
    assert 'loc("new.py:7")  // k0' in text and "old.py" not in text


def test_an_unmatched_op_line_loses_its_stale_location() -> None:
    g = _graph()
    text = '  %99: f32[1] = neg %98 loc("elsewhere.py:3")  // k9\n'
    assert reattach_locations(text, g) == "  %99: f32[1] = neg %98  // k9\n"
