"""The gemm kernel vs the interpreter: every transpose variant, ragged shapes, epilogues, column sums."""

import numpy as np
import pytest

from codegen.llvm.gemm import GemmShape, split_axis
from codegen.llvm.target import generic_target, host_target
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import f32
from tests.handgraphs import assert_close, run_both

RAGGED = [(1, 3, 17), (3, 17, 1), (17, 127, 129), (129, 1, 3), (127, 129, 17), (33, 64, 65)]


def matmul_graph(m, k, n, ta, tb, epilogue=(), colsum=False):
    b = Builder()
    a = Value(f32(*((k, m) if ta else (m, k))), "a")
    w = Value(f32(*((n, k) if tb else (k, n))), "w")
    bias = Value(f32(n), "bias")
    z = Value(f32(m, n), "z")
    h = b.matmul(a, w, transpose_a=ta, transpose_b=tb)
    outs = []
    for name in epilogue:
        if name == "bias":
            h = b.add(h, bias)
        elif name == "relu_grad":
            h = b.relu_grad(z, h)
        else:
            h = b.op(name, h)
    outs.append(Output("out", h))
    if colsum:
        outs.append(Output("colsum", b.sum(h, axes=[0])))
    ins = [Input("a", a), Input("w", w), Input("bias", bias), Input("z", z)]
    return Graph("mm", ins, b.ops, outs)


def data_for(g, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal(i.value.shape).astype(np.float32) for i in g.inputs}


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("mkn", RAGGED)
def test_transpose_variants_on_ragged_shapes(mkn, ta, tb):
    g = matmul_graph(*mkn, ta, tb)
    (got, want, _, _), = run_both(g, {}, data_for(g))
    assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("epilogue", [("bias", "relu"), ("bias", "sigmoid"), ("bias", "tanh"), ("bias", "gelu"),
                                      ("bias", "leaky_relu"), ("relu_grad",), ("bias",)])
@pytest.mark.parametrize("mkn,ta,tb", [((17, 33, 65), False, False), ((127, 40, 129), False, True),
                                       ((5, 129, 3), True, False)])
def test_fused_epilogues_and_column_sums(epilogue, mkn, ta, tb):
    g = matmul_graph(*mkn, ta, tb, epilogue, colsum=True)
    (got, want, _, _), = run_both(g, {}, data_for(g, 1))
    assert_close(got, want, rtol=2e-4, atol=2e-4)


def avx2_target():
    from codegen.llvm.target import Target

    t = host_target()
    return Target(t.triple, "haswell", "+avx,+avx2,+fma,+f16c,+popcnt,+sse4.2", 8, 1)


@pytest.mark.parametrize("lanes", [1, 4, 8, "avx2"])
def test_narrow_vector_and_scalar_fallback_targets(lanes):
    """Kernels for AVX2 (haswell), 8/4-lane and scalar (1) widths on a baseline x86-64 machine."""
    target = avx2_target() if lanes == "avx2" else generic_target(lanes)
    for mkn, ta, tb in [((17, 33, 19), False, True), ((9, 7, 33), True, False), ((40, 70, 37), True, False)]:
        g = matmul_graph(*mkn, ta, tb, ("bias", "relu"), colsum=True)
        (got, want, _, _), = run_both(g, {}, data_for(g, 2), target=target)
        assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_large_threaded_gemm_matches():
    t = host_target()
    g = matmul_graph(300, 200, 260, False, False, ("bias", "relu"), colsum=True)
    from dataclasses import replace
    (got, want, _, _), = run_both(g, {}, data_for(g, 3), target=replace(t, threads=2))
    assert_close(got, want, rtol=2e-4, atol=2e-4)
    g = matmul_graph(260, 300, 200, True, True)
    (got, want, _, _), = run_both(g, {}, data_for(g, 4), target=replace(t, threads=3))
    assert_close(got, want, rtol=2e-4, atol=2e-4)


def test_tile_choice_and_thread_split():
    s = GemmShape(128, 256, 784, False, False, 16)
    assert (s.mr, s.nr) == (6, 64) and s.mr * s.nv <= 24
    assert GemmShape(1, 256, 256, False, True, 16).nr == 128  # batch 1: wider row for more chains
    assert split_axis(GemmShape(1, 16, 8, False, False, 16), 2, False) == "none"  # small: no threads
    assert split_axis(GemmShape(128, 256, 256, False, True, 16), 2, True) == "n"   # colsums own columns
    assert split_axis(GemmShape(784, 256, 128, True, False, 16), 2, False) in ("m", "n")


@pytest.mark.parametrize("m", [1, 3, 17, 32])
def test_dot_form_for_few_rows_times_transposed_b(m):
    from codegen.llvm.gemm import gemm_shape

    g = matmul_graph(m, 45, 37, False, True, ("relu_grad",), colsum=True)
    assert gemm_shape(g.ops[0], 16).dot
    (got, want, _, _), = run_both(g, {}, data_for(g, 5))
    assert_close(got, want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("mkn,tb", [((130, 70, 33), False), ((97, 65, 40), True)])
def test_packed_transposed_a(mkn, tb):
    from codegen.llvm.gemm import gemm_shape

    g = matmul_graph(*mkn, True, tb)
    assert gemm_shape(g.ops[0], 16).pack_a
    (got, want, _, _), = run_both(g, {}, data_for(g, 6))
    assert_close(got, want, rtol=2e-4, atol=2e-4)
