"""Whole training steps on the llvm backend vs the NumPy interpreter: activations x losses x optimizers."""

from dataclasses import replace

import pytest

from codegen.llvm.target import generic_target, host_target
from tests.handgraphs import assert_close, init_state, mlp_train_graph, random_data, run_both

CASES = [
    ([7, 5, 3], 1, "relu", "ce", "adam", {}),
    ([17, 33, 4], 3, "sigmoid", "ce", "sgd", {"lr": 0.1}),
    ([9, 17, 6], 17, "tanh", "mse", "sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ([33, 127, 10], 129, "gelu", "ce", "momentum", {"lr": 0.05, "beta": 0.9, "unbiased": True}),
    ([129, 17, 17, 5], 127, "leaky_relu", "ce", "adam", {"weight_decay": 0.01, "decoupled": True}),
    ([5, 3], 4, "none", "mse", "adam", {"bias_correction": False}),
]


@pytest.mark.parametrize("sizes,batch,act,loss,opt,attrs", CASES)
def test_training_steps_match_interpreter(sizes, batch, act, loss, opt, attrs):
    g = mlp_train_graph(sizes, batch, act, loss, opt, attrs)
    datas = [random_data(g, s) for s in range(3)]
    for got, want, st, ref in run_both(g, init_state(g), {}, steps=3, datas=datas):
        assert_close(got, want, rtol=1e-4, atol=1e-5)
        assert_close(st, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opt,attrs", [("adam", {}), ("sgd", {"lr": 0.05, "momentum": 0.9})])
def test_threaded_step_matches_interpreter(opt, attrs):
    """Large enough that gemms, elementwise and optimizer kernels split over threads."""
    g = mlp_train_graph([300, 256, 10], 200, "relu", "ce", opt, attrs)
    datas = [random_data(g, s) for s in range(2)]
    for got, want, st, ref in run_both(g, init_state(g), {}, steps=2, datas=datas,
                                       target=replace(host_target(), threads=2)):
        assert_close(got, want, rtol=2e-4, atol=1e-5)
        assert_close(st, ref, rtol=2e-4, atol=2e-5)


def test_edge_graphs_outputs_that_are_inputs_constants_duplicates_and_no_ops():
    import numpy as np

    from mlpc.ir import Graph, Input, Output, Value
    from mlpc.ops import Builder
    from mlpc.types import f32

    b = Builder()
    x, p, u = Value(f32(3, 4), "x"), Value(f32(4), "p"), Value(f32(2), "unused")
    c = b.op("full", value=2.0, dtype="f32", shape=(3, 4))
    y = b.add(x, p)
    g = Graph("e", [Input("x", x), Input("p", p, "param"), Input("unused", u)], b.ops,
              [Output("same_as_input", x), Output("const", c), Output("y", y), Output("y2", y), Output("p", p)])
    rng = np.random.default_rng(0)
    state = {"p": rng.standard_normal(4).astype(np.float32)}
    data = {"x": rng.standard_normal((3, 4)).astype(np.float32), "unused": np.zeros(2, np.float32)}
    for got, want, st, ref in run_both(g, state, data, steps=2):
        assert_close(got, want)
        assert_close(st, ref)
    empty = Graph("n", [Input("x", x)], [], [Output("o", x)])
    (got, want, _, _), = run_both(empty, {}, {"x": data["x"]})
    assert_close(got, want)


@pytest.mark.parametrize("lanes", [1, 8])
def test_training_step_on_fallback_targets(lanes):
    """The scalar fallback (1 lane) and 8-lane code on baseline x86-64: same results."""
    g = mlp_train_graph([19, 33, 5], 7, "relu", "ce", "adam")
    datas = [random_data(g, s) for s in range(2)]
    for got, want, st, ref in run_both(g, init_state(g), {}, steps=2, datas=datas, target=generic_target(lanes)):
        assert_close(got, want, rtol=1e-4, atol=1e-5)
        assert_close(st, ref, rtol=1e-4, atol=1e-5)
