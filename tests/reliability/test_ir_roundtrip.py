"""Random IR programs: verify, print, parse back to an equal graph, and interpret identically."""

from __future__ import annotations

import numpy as np
from hypothesis import given

from mlpc.interpreter import interpret
from mlpc.ir import Graph, structurally_equal
from mlpc.parser import parse
from mlpc.printer import print_graph
from mlpc.verifier import verify

from .fuzzing import count, examples
from .irgen import graphs


def random_inputs(g: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in g.inputs:
        t = i.value.type
        if t.dtype.is_float:
            out[i.name] = rng.standard_normal(t.shape).astype(t.dtype.numpy)
        else:
            out[i.name] = np.zeros(t.shape, t.dtype.numpy)  # valid labels for any class count
    return out


@given(graphs())
@examples(150)
def test_random_graph_round_trips(g: Graph) -> None:
    count("random IR graph print/parse round trip")
    verify(g)
    text = print_graph(g)
    back = parse(text)
    verify(back, after="parse")
    assert structurally_equal(g, back), f"parse(print(g)) differs from g:\n{text}"
    assert print_graph(back) == text
    no_loc = parse(print_graph(g, show_loc=False))
    assert structurally_equal(g, no_loc, check_loc=False)
    inputs = random_inputs(g, 0)
    want, got = interpret(g, inputs), interpret(back, inputs)
    assert list(want) == list(got)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"output {k!r} differs after the round trip")
        assert got[k].dtype == want[k].dtype
