"""Every registered op has a cost rule and a lowering for llvm and triton: elementwise ops through their
scalar rule (checked against the op's NumPy reference), the others through a kernel; every sample call of
tests/op_cases.py runs on the Triton backend (under TRITON_INTERPRET=1 without a GPU) against the
interpreter. Ops Triton has no kernel for are listed here and must fail with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from llvmlite import ir

from codegen.llvm import ewops
from codegen.llvm.irutil import F32, I1
from codegen.triton_exprs import render as render_triton
from codegen.views import UnsupportedError
from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, all_ops, scalar
from mlpc.ops.registry import normalize_attrs
from mlpc.types import DType
from runtime.triton_check import compare
from tests.op_cases import Case, cases, sample

# Ops without a Triton kernel (the llvm backend runs them); a new op must not join this list silently.
TRITON_NO_KERNEL = {"eye", "concat", "slice", "linear_solve"}
F32_CASES = cases("f32")
SCALAR_CASES = [c for c in cases("f64") if all_ops()[c.op].scalar is not None]


def test_every_op_has_a_cost_rule_and_every_elementwise_op_a_scalar_rule():
    for name, d in all_ops().items():
        assert d.flops is not None, name
        if d.kind == "elementwise":
            assert d.scalar is not None, name


@pytest.mark.parametrize("case", SCALAR_CASES, ids=lambda c: c.id)
def test_scalar_rule_matches_the_reference_and_renders_for_both_backends(case: Case):
    d = all_ops()[case.op]
    attrs = normalize_attrs(d, case.attrs)
    assert d.scalar is not None
    expr = d.scalar(attrs)
    xs = sample(case, np.random.default_rng(0))
    out_dtype = d.infer(case.operands, attrs)[0].dtype
    want = d.reference(*xs, **attrs)
    if d.kind == "shape":  # broadcast_to / reshape: the identity on each element, the kernel moves them
        got = np.broadcast_to(scalar.evaluate(expr, xs, out_dtype.numpy), np.shape(want)) \
            if xs[0].size != np.size(want) else np.reshape(scalar.evaluate(expr, xs, out_dtype.numpy), np.shape(want))
    else:
        got = scalar.evaluate(expr, [np.broadcast_to(x, np.shape(want)) for x in xs], out_dtype.numpy)
    # erf's rational fit is a float32 approximation (~4e-7 absolute); the rest is exact arithmetic
    tol = 1e-6 if "erf" in case.op else 1e-12
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=tol, atol=tol)

    # both renderers take the rule (running the code is test_every_op.py's and test_op_runs_on_triton's job)
    dts = [DType.i1 if t.dtype == DType.i1 else DType.f32 for t in case.operands]
    fn = ir.Function(ir.Module(), ir.FunctionType(F32, [I1 if d == DType.i1 else F32 for d in dts]), "f")
    ewops.render(ir.IRBuilder(fn.append_basic_block()), expr, list(fn.args), dts, DType.f32)
    assert "a0" in render_triton(expr, [f"a{i}" for i in range(len(xs))], out_dtype)


def _state_graph(case: Case) -> Graph:
    """An update op's graph: p and state slots are param/state inputs updated in place, t is state."""
    b = Builder()
    n_slots = len(case.operands) - 3
    names = ["p", "g"] + [f"s{j}" for j in range(n_slots)] + ["t"]
    roles = ["param", "data"] + ["state"] * n_slots + ["state"]
    ins = [Input(n, Value(t, n), r) for n, t, r in zip(names, case.operands, roles)]
    res = b.op(case.op, *[i.value for i in ins], **case.attrs)
    res = res if isinstance(res, tuple) else (res,)
    outs = [Output(n, r) for n, r in zip(["p"] + names[2:2 + n_slots], res)]
    return Graph("opt", ins, b.ops, outs)


def _plain_graph(case: Case) -> Graph:
    b = Builder()
    ins = [Value(t, f"a{i}") for i, t in enumerate(case.operands)]
    res = b.op(case.op, *ins, **case.attrs)
    res = res if isinstance(res, tuple) else (res,)
    return Graph("one", [Input(v.hint, v) for v in ins], b.ops, [Output(f"r{i}", r) for i, r in enumerate(res)])


@pytest.mark.parametrize("case", F32_CASES, ids=lambda c: c.id)
def test_op_runs_on_triton(case: Case):
    optimizer = all_ops()[case.op].kind == "optimizer"
    g = _state_graph(case) if optimizer else _plain_graph(case)
    xs = sample(case, np.random.default_rng(0))
    # optimizer state (Adam's second moment) is non-negative
    data = {i.name: np.abs(x) if i.name.startswith("s") else np.asarray(x) for i, x in zip(g.inputs, xs)}
    if case.op == "allreduce":  # no backend lowers it: the data-parallel runtime splits the step there
        with pytest.raises(MlpcError, match="allreduce is not a kernel"):
            compare(g, data)
        return
    if case.op in TRITON_NO_KERNEL:
        with pytest.raises(UnsupportedError, match=f"no kernel for op '{case.op}'"):
            compare(g, data)
        return
    if any(len(v.shape) > 2 for op in g.ops for v in op.operands + op.results):
        with pytest.raises(UnsupportedError, match="rank <= 2"):
            compare(g, data)
        return
    if any(v.dtype == DType.f64 for op in g.ops for v in op.operands + op.results):
        # the triton backend refuses f64 at lower, naming the tensor (it would compute in f32)
        with pytest.raises(MlpcError, match="is an f64 tensor"):
            compare(g, data)
        return
    errors = compare(g, data, steps=2 if optimizer else 1)
    assert errors, "nothing was compared"
    bad = {k: e for k, e in errors.items() if not e <= 2e-6}
    assert not bad, f"relative errors over 2e-6: {bad}"
