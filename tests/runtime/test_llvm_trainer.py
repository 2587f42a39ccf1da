"""The llvm backend behind mlpc.compile: MNIST training matches the numpy backend, dumps, bad input."""

import numpy as np
import pytest

import mlpc
from mlpc import datasets, nn, optim
from mlpc.errors import InputError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Compiles go to a per-test cache, not the user's ~/.cache/mlpc."""
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mnist():
    return datasets.mnist()


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def losses(backend, opt, ds, steps=100, batch=128, perturb=False):
    tr = mlpc.compile(mlp(), nn.CrossEntropyLoss(), opt, batch_size=batch, backend=backend, seed=0)
    if perturb:  # every initial weight moved by one float32 ulp
        tr.load_state({k: np.nextafter(v, np.inf).astype(np.float32) for k, v in tr.parameters().items()})
    out = [tr.step(ds.x_train[i * batch:(i + 1) * batch], ds.y_train[i * batch:(i + 1) * batch])
           for i in range(steps)]
    return np.array(out), tr


def max_rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("opt", [optim.Adam(lr=1e-3), optim.SGD(lr=0.05, momentum=0.9)])
def test_100_mnist_steps_match_numpy_backend(mnist, opt):
    """Same losses step by step within float32 tolerance, where the tolerance is measured: how far
    the numpy backend's own losses move when every initial weight moves by one ulp (training
    amplifies rounding differences, most with heavy momentum: ~5e-5 for Adam, ~2e-3 for SGD 0.9)."""
    ref, tr_ref = losses("numpy", opt, mnist)
    noise, _ = losses("numpy", opt, mnist, perturb=True)
    got, tr = losses("llvm", opt, mnist)
    np.testing.assert_allclose(got[:10], ref[:10], rtol=1e-5)
    assert max_rel(got, ref) <= max(2 * max_rel(noise, ref), 1e-5), (max_rel(got, ref), max_rel(noise, ref))
    for k, v in tr_ref.parameters().items():
        np.testing.assert_allclose(tr.parameters()[k], v, atol=0.01, err_msg=k)
    assert tr.steps_taken == 100 and int(tr.optimizer_state()["t"]) == 100


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
