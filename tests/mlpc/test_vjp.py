"""Every op's derivative (first and second order) against central finite differences in float64."""

import numpy as np
import pytest

from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, get
from mlpc.types import DType, TensorType
from passes.autodiff import autodiff, hessian_vector_product
from tests.op_cases import Case, cases, sample


def differentiable(case: Case) -> bool:
    return get(case.op).vjp is not None and bool(case.operands) and any(t.dtype.is_float for t in case.operands)


def objective_graph(case: Case) -> Graph:
    """loss = sum_r sum(result_r * W_r) with fixed random weights W_r (data inputs)."""
    b = Builder()
    inputs = []
    for i, t in enumerate(case.operands):
        role = "param" if t.dtype.is_float and (case.diff is None or i in case.diff) else "data"
        inputs.append(Input(f"a{i}", Value(t, f"a{i}"), role))
    out = b.op(case.op, *[i.value for i in inputs], **case.attrs)
    results = out if isinstance(out, tuple) else (out,)
    total = None
    for k, r in enumerate(results):
        w = Input(f"w{k}", Value(r.type, f"w{k}"))
        inputs.append(w)
        prod = b.mul(r, w.value)
        s = b.sum(prod, axes=list(range(r.type.rank))) if r.type.rank else prod
        if s.dtype != DType.f64:
            s = b.cast(s, dtype="f64")
        total = s if total is None else b.add(total, s)
    return Graph("f", inputs, b.ops, [Output("loss", total)])


def feed(case: Case, g: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    env = {f"a{i}": v for i, v in enumerate(sample(case, rng))}
    for inp in g.inputs:
        if inp.name.startswith("w"):
            env[inp.name] = rng.normal(0, 1, inp.value.shape).astype(inp.value.dtype.numpy)
    return env


def numeric_grad(fn, env: dict[str, np.ndarray], name: str, eps: float) -> np.ndarray:
    x = env[name]
    grad = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        hi, lo = x.copy(), x.copy()
        hi[idx] += eps
        lo[idx] -= eps
        grad[idx] = (fn({**env, name: hi}) - fn({**env, name: lo})) / (2 * eps)
    return grad


DIFF_CASES = [c for c in cases("f64") if differentiable(c)]


@pytest.mark.parametrize("case", DIFF_CASES, ids=lambda c: c.id)
def test_vjp_matches_finite_differences(case):
    rng = np.random.default_rng(0)
    g = objective_graph(case)
    env = feed(case, g, rng)
    low_precision = any(r.dtype == DType.f32 for op in g.ops for r in op.results)
    eps, tol = (1e-3, 2e-3) if low_precision else (1e-6, 1e-6)
    grads = interpret(autodiff(g), env)
    loss = lambda e: float(interpret(g, e)["loss"])  # noqa: E731
    for inp in g.inputs_with_role("param"):
        expected = numeric_grad(loss, env, inp.name, eps)
        got = grads["grad." + inp.name]
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=f"d/d{inp.name}")


SECOND_ORDER = [c for c in DIFF_CASES if c.op != "cast"]


@pytest.mark.parametrize("case", SECOND_ORDER, ids=lambda c: c.id)
def test_vjp_is_differentiable_again(case):
    """H v from autodiff applied twice equals the finite difference of the gradient along v."""
    rng = np.random.default_rng(1)
    g = objective_graph(case)
    env = feed(case, g, rng)
    params = g.inputs_with_role("param")
    tangents = {f"tangent.{p.name}": rng.normal(0, 1, p.value.shape) for p in params}
    hv = interpret(hessian_vector_product(g), {**env, **tangents})
    grad_graph = autodiff(g)
    eps = 1e-5

    def grads_at(sign: float) -> dict[str, np.ndarray]:
        moved = {**env}
        for p in params:
            moved[p.name] = env[p.name] + sign * eps * tangents[f"tangent.{p.name}"]
        return interpret(grad_graph, moved)

    hi, lo = grads_at(1.0), grads_at(-1.0)
    for p in params:
        expected = (hi["grad." + p.name] - lo["grad." + p.name]) / (2 * eps)
        np.testing.assert_allclose(hv["hvp." + p.name], expected, rtol=1e-5, atol=1e-6, err_msg=f"H v for {p.name}")


def test_full_hessian_of_small_mlp_matches_finite_differences():
    """The exact Hessian of a tiny tanh MLP's cross-entropy, column by column from HVPs."""
    rng = np.random.default_rng(2)
    b = Builder()
    f64 = lambda *s: TensorType(DType.f64, s)  # noqa: E731
    x = Input("x", Value(f64(5, 3), "x"))
    y = Input("y", Value(TensorType(DType.i32, (5,)), "y"))
    w1 = Input("w1", Value(f64(3, 4), "w1"), "param")
    w2 = Input("w2", Value(f64(4, 3), "w2"), "param")
    h = b.tanh(b.matmul(x.value, w1.value))
    loss = b.softmax_cross_entropy(b.matmul(h, w2.value), y.value)
    g = Graph("f", [x, y, w1, w2], b.ops, [Output("loss", loss)])
    env = {"x": rng.normal(size=(5, 3)), "y": rng.integers(0, 3, 5).astype(np.int32),
           "w1": rng.normal(size=(3, 4)), "w2": rng.normal(size=(4, 3))}
    sizes = {"w1": 12, "w2": 12}
    hvp_graph = hessian_vector_product(g)
    grad_graph = autodiff(g)
    n = sum(sizes.values())

    def unflatten(vec):
        return {"w1": vec[:12].reshape(3, 4), "w2": vec[12:].reshape(4, 3)}

    hessian = np.zeros((n, n))
    for j in range(n):
        e = unflatten(np.eye(n)[j])
        out = interpret(hvp_graph, {**env, "tangent.w1": e["w1"], "tangent.w2": e["w2"]})
        hessian[:, j] = np.concatenate([out["hvp.w1"].ravel(), out["hvp.w2"].ravel()])
    flat = np.concatenate([env["w1"].ravel(), env["w2"].ravel()])

    def grad_at(vec):
        out = interpret(grad_graph, {**env, **unflatten(vec)})
        return np.concatenate([out["grad.w1"].ravel(), out["grad.w2"].ravel()])

    eps = 1e-5
    fd = np.stack([(grad_at(flat + eps * np.eye(n)[j]) - grad_at(flat - eps * np.eye(n)[j])) / (2 * eps)
                   for j in range(n)], axis=1)
    np.testing.assert_allclose(hessian, fd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-10)
