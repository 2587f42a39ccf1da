"""eye, concat, slice and linear_solve: references, type errors, and VJPs against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from mlpc.errors import NumericalError, ShapeError
from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import DType, TensorType
from passes.manager import PassManager


def f64(*shape: int) -> TensorType:
    return TensorType(DType.f64, shape)


def _scalar_graph(types: list[TensorType], build) -> Graph:
    vals = [Value(t, f"a{i}") for i, t in enumerate(types)]
    b = Builder()
    out = build(b, *vals)
    w = Value(out.type, "w")  # random weights make sum(w * out) a generic scalar
    loss = b.sum(b.mul(out, w), axes=list(range(out.type.rank)))
    inputs = [Input(f"a{i}", v, "param") for i, v in enumerate(vals)] + [Input("w", w)]
    return Graph("g", inputs, b.ops, [Output("loss", loss), Output("out", out)])


def _check_vjp(types: list[TensorType], build, feeds: dict[str, np.ndarray]) -> None:
    g = _scalar_graph(types, build)
    rng = np.random.default_rng(0)
    feeds = dict(feeds)
    feeds["w"] = rng.normal(size=g.input("w").value.shape)
    grads = interpret(PassManager().run(g, "autodiff"), feeds)
    eps = 1e-6
    for i in range(len(types)):
        name = f"a{i}"
        num = np.zeros_like(feeds[name])
        for idx in np.ndindex(num.shape):
            hi, lo = dict(feeds), dict(feeds)
            hi[name] = feeds[name].copy()
            lo[name] = feeds[name].copy()
            hi[name][idx] += eps
            lo[name][idx] -= eps
            num[idx] = (interpret(g, hi)["loss"] - interpret(g, lo)["loss"]) / (2 * eps)
        np.testing.assert_allclose(grads["grad." + name], num, rtol=1e-5, atol=1e-7)


def test_eye_concat_slice_reference() -> None:
    b = Builder()
    x = Value(f64(3, 2))
    y = Value(f64(3, 5))
    c = b.concat(x, y, axis=-1)
    s = b.slice(c, axis=1, start=1, stop=4)
    e = b.eye(n=3, dtype="f64")
    g = Graph("g", [Input("x", x), Input("y", y)], b.ops, [Output("c", c), Output("s", s), Output("e", e)])
    xv, yv = np.arange(6.0).reshape(3, 2), np.arange(15.0).reshape(3, 5)
    out = interpret(g, {"x": xv, "y": yv})
    np.testing.assert_array_equal(out["c"], np.concatenate([xv, yv], axis=1))
    np.testing.assert_array_equal(out["s"], np.concatenate([xv, yv], axis=1)[:, 1:4])
    np.testing.assert_array_equal(out["e"], np.eye(3))


def test_vjps_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    _check_vjp([f64(2, 3), f64(4, 3)], lambda b, x, y: b.concat(x, y, axis=0),
               {"a0": rng.normal(size=(2, 3)), "a1": rng.normal(size=(4, 3))})
    _check_vjp([f64(5, 3)], lambda b, x: b.slice(x, axis=0, start=1, stop=3), {"a0": rng.normal(size=(5, 3))})
    _check_vjp([f64(5, 3)], lambda b, x: b.slice(x, axis=1, start=0, stop=2), {"a0": rng.normal(size=(5, 3))})
    a = rng.normal(size=(4, 4))
    _check_vjp([f64(4, 4), f64(4)], lambda b, m, r: b.linear_solve(m, r, shift=3.0),
               {"a0": a, "a1": rng.normal(size=4)})
    _check_vjp([f64(4, 4), f64(4, 2)], lambda b, m, r: b.linear_solve(m, r, shift=3.0),
               {"a0": a, "a1": rng.normal(size=(4, 2))})


@pytest.mark.parametrize("method", ["lu", "cholesky"])
def test_linear_solve_solves_shifted_system(method: str) -> None:
    rng = np.random.default_rng(2)
    m = rng.normal(size=(7, 7))
    spd = (m @ m.T).astype(np.float32)
    rhs = rng.normal(size=7).astype(np.float32)
    b = Builder()
    a_v, r_v = Value(TensorType(DType.f32, (7, 7))), Value(TensorType(DType.f32, (7,)))
    x = b.linear_solve(a_v, r_v, shift=0.5, method=method)
    g = Graph("g", [Input("a", a_v), Input("r", r_v)], b.ops, [Output("x", x)])
    got = interpret(g, {"a": spd, "r": rhs})["x"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.linalg.solve(spd.astype(np.float64) + 0.5 * np.eye(7), rhs), rtol=1e-5)


def test_linear_solve_errors_are_clear() -> None:
    b = Builder()
    with pytest.raises(ShapeError, match="square"):
        b.linear_solve(Value(f64(3, 2)), Value(f64(3)))
    with pytest.raises(ShapeError, match="method"):
        b.linear_solve(Value(f64(3, 3)), Value(f64(3)), method="qr")
    with pytest.raises(ShapeError, match="out of range"):
        b.slice(Value(f64(3)), start=2, stop=5)
    with pytest.raises(ShapeError, match="differ"):
        b.concat(Value(f64(3, 2)), Value(f64(2, 3)), axis=0)
    a_v, r_v = Value(f64(2, 2)), Value(f64(2))
    x = b.linear_solve(a_v, r_v, method="cholesky")
    g = Graph("g", [Input("a", a_v), Input("r", r_v)], [b.ops[-1]], [Output("x", x)])
    with pytest.raises(NumericalError, match="not positive definite"):
        interpret(g, {"a": np.array([[1.0, 0.0], [0.0, -1.0]]), "r": np.ones(2)})
    lu = Builder()
    x2 = lu.linear_solve(a_v, r_v)
    g2 = Graph("g", [Input("a", a_v), Input("r", r_v)], lu.ops, [Output("x", x2)])
    with pytest.raises(NumericalError, match="singular.*add damping"):
        interpret(g2, {"a": np.zeros((2, 2)), "r": np.ones(2)})


def test_new_ops_print_and_parse_back() -> None:
    from mlpc.ir import structurally_equal
    from mlpc.parser import parse
    from mlpc.printer import print_graph

    b = Builder()
    x = Value(f64(4, 3))
    s = b.slice(x, axis=1, start=1, stop=3)
    c = b.concat(s, s, s, axis=1)
    e = b.eye(n=4, dtype="f64")
    r = b.linear_solve(e, b.reshape(b.slice(c, axis=1, start=0, stop=1), shape=(4,)), shift=1.0, method="cholesky")
    g = Graph("g", [Input("x", x)], b.ops, [Output("r", r)])
    assert structurally_equal(parse(print_graph(g)), g, check_loc=False)
