"""Random IR programs: verify, print, parse back to an equal graph, and interpret identically."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given

from mlpc.errors import MlpcError
from mlpc.interpreter import interpret
from mlpc.ir import Graph, structurally_equal
from mlpc.parser import parse
from mlpc.printer import print_graph
from mlpc.types import DType
from mlpc.verifier import verify
from runtime.backend import available_backends, get_backend

from ..codegen.test_chained_updates import CHAINED_UPDATE_GRAPHS
from .backends import budget, profile, run_cases
from .fuzzing import count, examples
from .irgen import graphs

BACKENDS = available_backends()


def random_inputs(g: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in g.inputs:
        t = i.value.type
        if i.role == "hyper":  # an optimizer's lr/betas/weight decay: in their valid range
            out[i.name] = rng.uniform(0.05, 0.95, t.shape).astype(t.dtype.numpy)
        elif t.dtype.is_float:
            out[i.name] = rng.standard_normal(t.shape).astype(t.dtype.numpy)
        else:
            out[i.name] = np.zeros(t.shape, t.dtype.numpy)  # valid labels for any class count
    return out


# Failures found by the random search, kept as fixed examples. SIGNED_ZERO: `full {value = -0.0}` was
# printed as `full` (the default 0.0), so it parsed back as +0.0 and shared the llvm compile-cache key of
# the +0.0 graph, whose kernel then gave div(state, full) the wrong sign of infinity.
SIGNED_ZERO = parse("""func @g(state %s: f32[4], param %p: f32[4]) -> (a: f32[4], b: f32[4], c: f32[4]) {
  %0: f32[4] = full {value = 0.0, shape = [4]}
  %1: f32[4] = full {value = -0.0, shape = [4]}
  %2: f32[4] = div %s, %0
  %3: f32[4] = div %s, %1
  %4: f32[4] = mul %p, %0
  %5: f32[4] = sub %0, %4
  %6: f32[4] = div %s, %5
  return %2, %3, %6
}""")
# Bugs that were KNOWN_ISSUES xfails before they were fixed: a second update reading the first's result
# (llvm: KeyError in codegen, or a stale read), constant outputs (triton: float32 (1, n) instead of the
# declared type and shape) and an infinite attribute (triton: a bare `inf` in the kernel source).
CHAINED_UPDATES = parse(CHAINED_UPDATE_GRAPHS[1])
CONSTANT_OUTPUTS = parse("""func @g(data %x: f32[3, 4]) -> (ones: f32[4], idx: i32[2, 3], y: f32[3, 4]) {
  %0: f32[4] = full {value = 1.0, shape = [4]}
  %1: i32[2, 3] = full {value = 7.0, dtype = "i32", shape = [2, 3]}
  %2: f32[3, 4] = leaky_relu %x {alpha = inf}
  return %0, %1, %2
}""")
PINNED = [SIGNED_ZERO, CHAINED_UPDATES, CONSTANT_OUTPUTS]


@given(graphs())
@example(SIGNED_ZERO)
@example(CHAINED_UPDATES)
@example(CONSTANT_OUTPUTS)
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


def check_backend_graph(backend: str, g: Graph) -> None:
    """`backend` either refuses `g` with a clear MlpcError when lowering, or computes what the interpreter
    computes (same NaN/Inf positions; values to the backend's tolerance)."""
    inputs = random_inputs(g, 1)
    want = interpret(g, inputs)
    be = get_backend(backend)
    try:
        compiled = be.lower(g, lambda stage, text: None)
    except MlpcError:
        count(f"random f32 graph refused by {backend} (clear error)")
        return
    count(f"random f32 graph on {backend} vs interpreter")
    state = {i.name: be.to_device(inputs[i.name]) for i in g.inputs if i.role != "data"}
    got = compiled.run(state, {i.name: inputs[i.name] for i in g.inputs if i.role == "data"})
    rtol = profile(backend).value_rtol
    assert sorted(got) == sorted(want), f"{backend} returned outputs {sorted(got)}, graph has {sorted(want)}"
    for k, w in want.items():
        a = np.asarray(got[k])
        assert a.shape == w.shape and a.dtype == w.dtype, f"{k}: {a.dtype}{a.shape} vs {w.dtype}{w.shape}"
        if w.dtype.kind != "f":
            np.testing.assert_array_equal(a, w, err_msg=k)
            continue
        np.testing.assert_array_equal(np.isnan(a), np.isnan(w), err_msg=f"{k}: NaN positions differ")
        np.testing.assert_array_equal(np.isinf(a) * np.sign(a), np.isinf(w) * np.sign(w), err_msg=f"{k}: Inf")
        fin = np.isfinite(w)
        atol = rtol * 1e-2 * (np.abs(w[fin]).max(initial=0) + 1)
        np.testing.assert_allclose(a[fin], w[fin], rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_f32_graphs_on_backends(backend: str) -> None:
    run_cases(graphs(max_ops=12, floats=(DType.f32,)), budget(backend, 60), lambda g: check_backend_graph(backend, g),
              pinned=PINNED)
