"""The llvm backend behind mlpc.compile: MNIST training matches the numpy backend, dumps, bad input."""

import numpy as np
import pytest

import mlpc
from mlpc import datasets, nn, optim
from mlpc.errors import InputError
from mlpc.types import DType
from tests.reliability.differential import assert_step_close_f32, host_state, run_graph, step_graph, to_f64


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Compiles go to a per-test cache, not the user's ~/.cache/mlpc."""
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mnist():
    return datasets.mnist()


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def losses(backend, opt, ds, steps=100, batch=128, keep=()):
    """Per-step losses of `steps` steps, the trainer, and the state before each step listed in `keep`."""
    tr = mlpc.compile(mlp(), nn.CrossEntropyLoss(), opt, batch_size=batch, backend=backend, seed=0)
    out, kept = [], {}
    for i in range(steps):
        if i in keep:
            kept[i] = host_state(tr)
        out.append(tr.step(*batch_of(ds, i, batch)))
    return np.array(out), tr, kept


def batch_of(ds, i, batch=128):
    return ds.x_train[i * batch:(i + 1) * batch], ds.y_train[i * batch:(i + 1) * batch]


def f64_run(opt, ds, steps=100, batch=128):
    """The same steps from the same initial state in float64 (the step graph retyped, interpreted)."""
    tr = mlpc.compile(mlp(), nn.CrossEntropyLoss(), opt, batch_size=batch, backend="numpy", seed=0)
    graph, state = step_graph(tr, batch, DType.f64), to_f64(host_state(tr))
    out = []
    for i in range(steps):
        x, y = batch_of(ds, i, batch)
        loss, state = run_graph(graph, state, x.astype(np.float64), y)
        out.append(loss)
    return np.array(out), state


def rel(a, b):
    return np.abs(a - b) / np.abs(b)


# How far float32 training of this net on these batches strays from the float64 run of the same steps,
# measured over the numpy backend with OpenBLAS's Haswell, SkylakeX and Zen kernels, the llvm backend, and
# both with every initial weight moved +-1 ulp at random (3 seeds): (loss rel. error over steps 0-9, over
# all 100 steps, largest final weight error). Adam's runs land on one of two branches: within 6e-7 of f64,
# or (Haswell, Zen, one perturbed llvm run) a branch where a layer-1 ReLU unit that had been dead for every
# sample is switched on at step 3 by a pre-activation of 6.6e-8 (-2.3e-8 on the other branch: the sign is
# decided by summation order); Adam then moves all 784 of that unit's weights by ~0.6 lr (v's history is
# zero, so m/sqrt(v) has full size whatever the gradient's size) and the trajectories part. Measured:
# Adam 7.3e-4, 1.8e-2, 0.028 (that branch; the other: 3.3e-7, 5.6e-7, 5e-4). SGD with momentum 0.9 also
# has two branches, parting after step 10: 4.3e-7, 1.9e-3, 3.4e-3 (Haswell, Zen, llvm) or 1.2e-7, 2.5e-4,
# 8.6e-4 (SkylakeX). The bounds are about twice the worst measured (first ten SGD steps: 4.6x); the per-step
# checks below hold probed steps to f32 rounding from a state shared with the f64 step.
F64_SPREAD = {"Adam": (1.5e-3, 4e-2, 0.06), "SGD": (2e-6, 4e-3, 7e-3)}
PROBES = (0, 3, 10, 50, 99)


@pytest.mark.parametrize("opt", [optim.Adam(lr=1e-3), optim.SGD(lr=0.05, momentum=0.9)])
def test_100_mnist_steps_match_numpy_backend(mnist, opt):
    """Both backends train like the float64 run of the same steps, within the measured float32 spread
    (F64_SPREAD, which holds for any BLAS summation order), and each probed step, started from a state
    shared with the float64 step, agrees with it to float32 rounding (losses 1e-5, updates 0.1% norm-wise)."""
    kind = type(opt).__name__
    first10, overall, weights = F64_SPREAD[kind]
    want, want_state = f64_run(opt, mnist)
    for backend in ("numpy", "llvm"):
        got, tr, kept = losses(backend, opt, mnist, keep=PROBES)
        assert rel(got, want)[:10].max() <= first10 and rel(got, want).max() <= overall, \
            (backend, float(rel(got, want)[:10].max()), float(rel(got, want).max()))
        for k, v in tr.parameters().items():
            np.testing.assert_allclose(v, want_state[k], atol=weights, rtol=0, err_msg=f"{backend} {k}")
        assert tr.steps_taken == 100 and int(tr.optimizer_state()["t"]) == 100
        graph = step_graph(tr, 128, DType.f64)
        for i, before in kept.items():
            x, y = batch_of(mnist, i)
            want_loss, want_after = run_graph(graph, to_f64(before), x.astype(np.float64), y)
            tr.load_state(before)
            np.testing.assert_allclose(tr.step(x, y), want_loss, rtol=1e-5, err_msg=f"{backend} step {i}")
            assert_step_close_f32(before, host_state(tr), want_after, f"{backend} step {i}", opt.spec())


def test_predict_partial_batch_and_stages(mnist):
    tr = mlpc.compile(mlp(), nn.CrossEntropyLoss(), optim.Adam(), batch_size=32, backend="llvm", seed=1)
    ref = mlpc.compile(mlp(), nn.CrossEntropyLoss(), optim.Adam(), batch_size=32, backend="numpy", seed=1)
    x, y = mnist.x_train[:45], mnist.y_train[:45]
    for t in (tr, ref):
        t.step(x[:32], y[:32])
        t.step(x[32:], y[32:])   # partial batch: a second compiled shape sharing the state
    np.testing.assert_allclose(tr.predict(x), ref.predict(x), rtol=1e-4, atol=1e-4)
    assert {"fused", "planned", "llvm", "asm"} <= set(tr.stages())
    assert "k0_gemm" in tr.ir("fused") and "arena:" in tr.ir("planned")
    assert "define" in tr.ir("llvm") and "; ---- kernel k0_gemm" in tr.ir("llvm")
    assert "# ---- kernel k0_gemm" in tr.ir("asm") and ("zmm" in tr.ir("asm") or "ymm" in tr.ir("asm")
                                                         or "xmm" in tr.ir("asm"))


def test_bad_input_gives_clear_errors():
    from runtime.llvm_backend import lower_graph
    from tests.handgraphs import init_state, mlp_train_graph, random_data

    g = mlp_train_graph([5, 4, 3], 2, "relu", "ce", "adam")
    c = lower_graph(g, use_cache=False)
    st = {k: v for k, v in init_state(g).items()}
    d = random_data(g)
    with pytest.raises(InputError, match="labels"):
        c.run(st, {**d, "y": np.array([0, 3], np.int32)})
    with pytest.raises(InputError, match="shape"):
        c.run(st, {**d, "x": np.zeros((3, 5), np.float32)})
    with pytest.raises(InputError, match="missing"):
        c.run(st, {"x": d["x"]})
    with pytest.raises(InputError, match="state buffer"):
        c.run({**st, "0.weight": [[0.0] * 4] * 5}, d)
    c.run(st, d)  # still usable afterwards


def test_per_kernel_profile_hook():
    from runtime.llvm_backend import aligned_copy, lower_graph
    from tests.handgraphs import init_state, mlp_train_graph, random_data

    g = mlp_train_graph([33, 17, 5], 8, "relu", "ce", "adam")
    c = lower_graph(g)
    times = c.profile({k: aligned_copy(v) for k, v in init_state(g).items()}, random_data(g), 3)
    assert set(times) == set(c._profiled.meta["kernels"]) and any(k.endswith("_gemm") for k in times)
    assert all(0 <= t < 1.0 for t in times.values()) and sum(times.values()) > 0


def test_newton_steps_match_numpy_backend():
    """Newton's method (Hessian, eye/concat/slice, linear_solve) through the llvm backend."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = rng.integers(0, 3, 32).astype(np.int32)
    res = {}
    for be in ("numpy", "llvm"):
        tr = mlpc.compile(nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)), nn.CrossEntropyLoss(),
                          optim.Newton(lr=0.5, damping=0.1), batch_size=32, backend=be, seed=0)
        res[be] = [tr.step(x, y) for _ in range(4)]
    np.testing.assert_allclose(res["llvm"], res["numpy"], rtol=1e-4)
