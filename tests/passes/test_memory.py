"""Memory planning: liveness-based reuse never overlaps live buffers; updates happen in place."""

import numpy as np

from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import f32
from passes.fusion import fuse
from passes.memory import plan_memory
from tests.handgraphs import assert_close, mlp_train_graph, run_both


def test_live_buffers_never_overlap_and_reuse_happens():
    g = mlp_train_graph([784, 256, 256, 10], 128, "relu", "ce", "adam")
    plan = fuse(g)
    mem = plan_memory(plan, {3: 1000})
    arena = [(v, s) for v, s in mem.slots.items() if s.external is None]
    for i, (v, s) in enumerate(arena):
        lo, hi = mem.intervals[v]
        for w, t in arena[i + 1:]:
            lo2, hi2 = mem.intervals[w]
            if not (hi < lo2 or hi2 < lo):
                assert s.offset + s.nbytes <= t.offset or t.offset + t.nbytes <= s.offset
    total = sum(s.nbytes for _, s in arena)
    assert mem.arena_bytes < total  # something was reused
    assert "arena:" in mem.dump(plan)


def test_params_and_optimizer_state_are_updated_in_place():
    g = mlp_train_graph([17, 9, 3], 5, "relu", "ce", "adam")
    mem = plan_memory(fuse(g))
    state = [i.name for i in g.inputs if i.role != "data"]
    assert sorted(mem.inplace) == sorted(state)
    assert not mem.copy_back


def test_unsafe_in_place_update_falls_back_to_copy_back():
    """p is read after its new value is computed: the new value must not overwrite p early."""
    b = Builder()
    p, g = Value(f32(6, 4), "p"), Value(f32(6, 4), "g")
    newp = b.sub(p, g)
    late = b.sum(p, axes=[0])   # a later kernel reads the old p
    graph = Graph("u", [Input("p", p, "param"), Input("g", g)], b.ops, [Output("p", newp), Output("late", late)])
    mem = plan_memory(fuse(graph))
    assert [name for _, name in mem.copy_back] == ["p"]
    rng = np.random.default_rng(0)
    state = {"p": rng.standard_normal((6, 4)).astype(np.float32)}
    data = {"g": rng.standard_normal((6, 4)).astype(np.float32)}
    for got, want, st, ref in run_both(graph, state, data, steps=2):
        assert_close(got, want)
        assert_close(st, ref)
