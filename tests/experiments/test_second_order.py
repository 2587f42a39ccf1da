"""Second-order autodiff: vectorized HVPs, full Hessians, mlpc.grad/hessian, and optim.Newton."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlpc
from mlpc import F, nn, optim
from mlpc.api import trace_model
from mlpc.errors import MlpcError
from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import DType, TensorType
from passes.batching import vectorize
from passes.manager import PassManager


def f64(*shape: int) -> TensorType:
    return TensorType(DType.f64, shape)


def _fd_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[i] += eps
        lo[i] -= eps
        out[i] = (f(hi) - f(lo)) / (2 * eps)
    return out


def _smooth(x, a):
    return (F.exp(x * 0.3) * a).sum() + F.tanh(x).sum() * 2.0 + (x * x * x).sum() / 6.0 + F.sigmoid(x * a).sum()


def test_grad_and_hessian_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    x, a = rng.normal(size=5), rng.normal(size=5)

    def value(v):
        sig = 1 / (1 + np.exp(-v * a))
        return (np.exp(0.3 * v) * a).sum() + 2 * np.tanh(v).sum() + (v ** 3).sum() / 6 + sig.sum()

    g = mlpc.grad(_smooth)(x, a)
    np.testing.assert_allclose(g, _fd_grad(value, x), rtol=1e-6, atol=1e-8)
    h = mlpc.hessian(_smooth)(x, a)
    assert h.shape == (5, 5)
    gfun = mlpc.grad(_smooth)
    fd = np.stack([_fd_grad(lambda v, i=i: gfun(v, a)[i], x) for i in range(5)])
    np.testing.assert_allclose(h, fd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(h, h.T, atol=1e-12)


def test_hessian_of_matrix_function_with_constants() -> None:
    rng = np.random.default_rng(1)
    w0, xs = rng.normal(size=(3, 4)), rng.normal(size=(6, 3))
    labels = rng.integers(0, 4, 6)

    def f(w, x, y):
        return F.cross_entropy(F.gelu(x @ w, approximate="tanh"), y) + (w * w).sum() * 0.01

    tw = torch.tensor(w0, requires_grad=True)

    def tf(w):
        z = torch.nn.functional.gelu(torch.tensor(xs) @ w, approximate="tanh")
        return torch.nn.functional.cross_entropy(z, torch.tensor(labels)) + 0.01 * (w * w).sum()

    expect = torch.autograd.functional.hessian(tf, tw).reshape(12, 12).numpy()
    np.testing.assert_allclose(mlpc.hessian(f)(w0, xs, labels), expect, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(mlpc.grad(f)(w0, xs, labels), torch.func.grad(tf)(tw).detach().numpy(), rtol=1e-8)


def test_grad_and_hessian_errors() -> None:
    with pytest.raises(MlpcError, match="float scalar"):
        mlpc.grad(lambda x: x * 2.0)(np.ones(3))
    with pytest.raises(MlpcError, match="must be float"):
        mlpc.grad(lambda x: x.sum())(np.ones(3, np.int32))
    with pytest.raises(MlpcError, match="max_params"):
        mlpc.hessian(lambda x: (x * x).sum(), max_params=10)(np.ones(11))


def _torch_model_hessian(model: nn.Module, x: np.ndarray, y: np.ndarray, act) -> np.ndarray:
    names = list(model.parameters())
    shapes = [model.parameters()[n].shape for n in names]
    flat0 = np.concatenate([model.parameters()[n].data.astype(np.float64).ravel() for n in names])

    def loss(flat):
        parts, start = [], 0
        for s in shapes:
            n = int(np.prod(s))
            parts.append(flat[start:start + n].reshape(s))
            start += n
        z = torch.tensor(x, dtype=torch.float64)
        z = act(z @ parts[0] + parts[1])
        z = z @ parts[2] + parts[3]
        return torch.nn.functional.cross_entropy(z, torch.tensor(y, dtype=torch.long))

    return torch.autograd.functional.hessian(loss, torch.tensor(flat0)).numpy()


@pytest.mark.parametrize("act,tact", [(nn.Tanh, torch.tanh), (nn.ReLU, torch.relu),
                                      (nn.Sigmoid, torch.sigmoid)])
def test_hessian_pass_on_mlp_matches_torch(act, tact) -> None:
    model = nn.Sequential(nn.Linear(5, 4), act(), nn.Linear(4, 3))
    model.initialize(3)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 5)).astype(np.float32), rng.integers(0, 3, 7).astype(np.int32)
    g = PassManager().run(trace_model(model, 7, 5, nn.CrossEntropyLoss(), "step"), "autodiff,hessian,simplify")
    feeds = {"x": x, "y": y, **{k: p.data for k, p in model.parameters().items()}}
    h = interpret(g, feeds)["hessian"]
    assert h.shape == (39, 39)
    np.testing.assert_allclose(h, _torch_model_hessian(model, x, y, tact), rtol=2e-3, atol=2e-5)


def test_hessian_in_chunks_equals_one_chunk() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2))
    model.initialize(1)
    rng = np.random.default_rng(3)
    feeds = {"x": rng.normal(size=(5, 4)).astype(np.float32), "y": rng.integers(0, 2, 5).astype(np.int32),
             **{k: p.data for k, p in model.parameters().items()}}
    traced = trace_model(model, 5, 4, nn.CrossEntropyLoss(), "step")
    whole = interpret(PassManager().run(traced, "hessian"), feeds)["hessian"]
    small = PassManager().run(traced, "hessian{chunk_bytes=100}")  # 100 bytes: one or two tangents a chunk
    assert sum(op.name == "eye" for op in small.ops) == 4
    assert sum(op.name == "slice" for op in small.ops) > 8
    np.testing.assert_allclose(interpret(small, feeds)["hessian"], whole, rtol=1e-6, atol=1e-7)


def _stack_case(build, types: list[TensorType], batched: list[bool], size: int = 3) -> None:
    """vectorize(build) over `size` members equals running the unbatched graph once per member."""
    rng = np.random.default_rng(4)
    vals = [Value(t, f"a{i}") for i, t in enumerate(types)]
    b = Builder()
    out = build(b, *vals)
    g = Graph("g", [Input(f"a{i}", v) for i, v in enumerate(vals)], b.ops, [Output("out", out)])
    data = [rng.normal(size=((size,) if f else ()) + t.shape) if t.dtype.is_float
            else rng.integers(0, 3, ((size,) if f else ()) + t.shape) for t, f in zip(types, batched, strict=True)]
    vb = Builder()
    stacked = {v: Value(TensorType(v.dtype, (size,) + v.shape), f"s{i}")
               for i, (v, f) in enumerate(zip(vals, batched, strict=True)) if f}
    mapping = vectorize(b.ops, stacked, size, vb)
    inputs = [Input(f"s{i}", stacked[v]) if v in stacked else Input(f"a{i}", v) for i, v in enumerate(vals)]
    vg = Graph("v", inputs, vb.ops, [Output("out", mapping.get(out, out))])
    feeds_v = {f"s{i}" if f else f"a{i}": d for i, (d, f) in enumerate(zip(data, batched, strict=True))}
    got = interpret(vg, feeds_v)["out"]
    for k in range(size):
        feeds = {f"a{i}": d[k] if f else d for i, (d, f) in enumerate(zip(data, batched, strict=True))}
        np.testing.assert_allclose(got[k], interpret(g, feeds)["out"], rtol=1e-10, atol=1e-12)


def test_vectorize_rules_match_a_loop() -> None:
    i32 = lambda *s: TensorType(DType.i32, s)  # noqa: E731
    mm = lambda ta, tb: lambda b, x, y: b.matmul(x, y, transpose_a=ta, transpose_b=tb)  # noqa: E731
    for ta in (False, True):
        for tb in (False, True):
            sa, sb = ((4, 2) if ta else (2, 4)), ((5, 4) if tb else (4, 5))
            for flags in ([True, False], [False, True], [True, True]):
                _stack_case(mm(ta, tb), [f64(*sa), f64(*sb)], flags)
    _stack_case(lambda b, x, g: b.relu_grad(x, g), [f64(2, 3), f64(2, 3)], [False, True])
    _stack_case(lambda b, x, v: b.add(b.mul(x, v), v), [f64(2, 3), f64(3)], [False, True])
    _stack_case(lambda b, x: b.sum(b.broadcast_to(x, shape=(2, 3)), axes=[0], keepdims=True), [f64(3)], [True])
    _stack_case(lambda b, x: b.transpose(b.reshape(x, shape=(3, 2))), [f64(6)], [True])
    _stack_case(lambda b, x: b.log_softmax(b.max(x, axes=[1], keepdims=True)), [f64(2, 3)], [True])
    _stack_case(lambda b, p, t: b.mse(p, t), [f64(2, 3), f64(2, 3)], [True, False])
    _stack_case(lambda b, x, y: b.slice(b.concat(x, y, axis=1), axis=1, start=1, stop=4), [f64(2, 3), f64(2, 2)],
                [True, False])
    for flags in ([True, False, False], [False, False, True], [True, False, True]):
        _stack_case(lambda b, z, lab, g: b.softmax_cross_entropy_grad(z, lab, g), [f64(4, 3), i32(4), f64()],
                    flags)


def test_vectorize_without_rule_is_a_clear_error() -> None:
    b = Builder()
    a_v, r_v = Value(f64(2, 2)), Value(f64(2))
    b.linear_solve(a_v, r_v)
    with pytest.raises(MlpcError, match="no batching rule"):
        vectorize(b.ops, {r_v: Value(f64(3, 2))}, 3, Builder())


def _quadratic(theta, p, q):
    t = theta.reshape(1, theta.shape[0])
    return {"loss": 0.5 * ((t @ p) * t).sum() + (q * theta).sum()}


@pytest.mark.parametrize("dtype", [DType.f64, DType.f32])
def test_newton_solves_a_quadratic_in_one_step(dtype: DType) -> None:
    rng = np.random.default_rng(5)
    m = rng.normal(size=(6, 6))
    p = m @ m.T + 0.5 * np.eye(6)
    q = rng.normal(size=6)
    t = lambda *s: TensorType(dtype, s)  # noqa: E731
    g = mlpc.trace(_quadratic, {"p": t(6, 6), "q": t(6)}, params={"theta": t(6)})
    step = PassManager().run(g, "autodiff,newton{lr=1.0},simplify")
    np_t = dtype.numpy
    out = interpret(step, {"theta": rng.normal(size=6).astype(np_t) * 10, "p": p.astype(np_t),
                           "q": q.astype(np_t), "t": np.int32(0)})
    optimum = -np.linalg.solve(p, q)
    np.testing.assert_allclose(out["theta"], optimum, atol=1e-6 if dtype == DType.f64 else 1e-4)
    if dtype == DType.f64:
        assert np.abs(out["theta"] - optimum).max() < 1e-10


def test_newton_trainer_least_squares_one_step() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(40, 1))).astype(np.float32)
    tr = mlpc.compile(nn.Linear(3, 1), nn.MSELoss(), optim.Newton(lr=1.0), batch_size=40)
    tr.step(x, y)
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(40)].astype(np.float64), y.astype(np.float64), rcond=None)
    got = tr.parameters()
    np.testing.assert_allclose(np.r_[got["weight"].ravel(), got["bias"]], coef.ravel(), atol=1e-5)


def test_newton_refuses_large_models() -> None:
    with pytest.raises(MlpcError, match="max_params=20000"):
        mlpc.compile(nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), optimizer=optim.Newton())
    with pytest.raises(MlpcError, match="max_params=100"):
        mlpc.compile(nn.Linear(20, 10), optimizer=optim.Newton(max_params=100))


def test_damped_newton_beats_gradient_descent_on_softmax_regression(mnist_batch) -> None:
    """10 damped Newton steps reach a lower training loss than 100 GD steps at the best of 6 step sizes
    (full batch: 1000 MNIST digits average-pooled to 7x7, so 49-10 softmax regression, 500 params;
    examples/newton_mnist.py runs the 784-10 version)."""
    from mlpc.experiments.newton_study import newton_vs_gd, pool

    x, y = pool(mnist_batch[0], 4), mnist_batch[1]
    study = newton_vs_gd(x, y, optim.Newton(lr=0.5, damping=1e-3), 10, 100, gd_lrs=(0.03, 0.1, 0.3, 1.0, 3.0, 10.0))
    assert len(study.newton) == 11 and all(len(c) == 101 for c in study.gd.values())
    assert all(np.diff(study.newton) < 0)  # damped Newton decreases the loss at every step here
    best_lr, best = study.best_gd()
    assert study.newton[-1] < best[-1]
    assert study.newton[-1] < min(min(c) for c in study.gd.values())  # even the best GD loss seen in 100 steps
