"""Whole training steps on the llvm backend vs the NumPy interpreter: activations x losses x optimizers."""

from dataclasses import replace

import pytest

from codegen.llvm.target import host_target
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
