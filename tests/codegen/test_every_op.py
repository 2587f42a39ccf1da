"""Every registered op through the llvm backend vs the interpreter (one sample call per op from
tests/op_cases.py, in float32); ops the backend cannot compute must fail with a clear MlpcError."""

import numpy as np
import pytest

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, all_ops
from runtime.llvm_backend import lower_graph
from tests.handgraphs import assert_close, run_both
from tests.op_cases import cases, sample

CASES = cases("f32")


def case_graph(case):
    b = Builder()
    ins = [Value(t, f"a{i}") for i, t in enumerate(case.operands)]
    res = b.op(case.op, *ins, **case.attrs)
    res = res if isinstance(res, tuple) else (res,)
    return Graph("one", [Input(v.hint, v) for v in ins], b.ops, [Output(f"r{i}", r) for i, r in enumerate(res)])


def test_cases_cover_the_registry():
    assert {c.op for c in CASES} == set(all_ops())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_interpreter(case):
    g = case_graph(case)
    data = {f"a{i}": x for i, x in enumerate(sample(case, np.random.default_rng(0)))}
    if case.op == "allreduce":  # never lowered: the runtime splits a data-parallel step at it
        with pytest.raises(MlpcError, match="allreduce is not a kernel"):
            lower_graph(g, use_cache=False)
        return
    if any(o.value.dtype.value not in ("f32", "i32", "i1") for o in g.outputs):
        with pytest.raises(MlpcError, match="f32"):
            lower_graph(g, use_cache=False)
        return
    (got, want, _, _), = run_both(g, {}, data)
    assert_close(got, want, rtol=2e-5, atol=2e-6)
