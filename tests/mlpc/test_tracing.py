"""Tracing: operator overloading builds typed IR; shape errors point at the user's own line."""

import numpy as np
import pytest

import mlpc
from mlpc import F, nn
from mlpc.errors import ShapeError
from mlpc.interpreter import interpret
from mlpc.types import f32


def test_operator_overloading_traces_typed_ops():
    def f(x, w, b):
        return F.relu(x @ w + b) * 2.0 - 1 / (1 + F.exp(-x @ w))

    g = mlpc.trace(f, {"x": f32(4, 3)}, params={"w": f32(3, 2), "b": f32(2)})
    assert [op.name for op in g.ops][:3] == ["matmul", "add", "relu"]
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    expected = np.maximum(x @ w + b, 0) * 2 - 1 / (1 + np.exp(-x @ w))
    np.testing.assert_allclose(interpret(g, {"x": x, "w": w, "b": b})["out"], expected, rtol=1e-5)


def test_shape_error_names_the_users_line():
    def f(x, w):
        return x @ w  # the line the error must name

    with pytest.raises(ShapeError) as e:
        mlpc.trace(f, {"x": f32(4, 3)}, params={"w": f32(5, 2)})
    msg = str(e.value)
    assert "test_tracing.py:" in msg and "inner dimensions differ" in msg
    assert "return x @ w  # the line the error must name" in msg


def test_model_shape_error_names_where_the_layer_was_built():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(),
                          nn.Linear(5, 2))  # mismatched on purpose
    with pytest.raises(ShapeError) as e:
        mlpc.compile(model, batch_size=2)
    assert "Linear(5, 2)" in str(e.value) and "test_tracing.py:" in str(e.value)


def test_ops_carry_the_location_of_their_module():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    trainer = mlpc.compile(model, batch_size=2)
    traced = trainer.graph("traced")
    assert all(op.loc.startswith("test_tracing.py:") for op in traced.ops)


def test_reductions_reshape_and_transpose():
    def f(x):
        return (x.T.reshape(-1, 2).sum(axis=0) + x.mean() + x.max(axis=1).sum()) ** 3.0

    g = mlpc.trace(f, {"x": f32(3, 4)})
    x = np.arange(12.0).reshape(3, 4)
    expected = (x.T.reshape(-1, 2).sum(0) + x.mean() + x.max(1).sum()) ** 3
    np.testing.assert_allclose(interpret(g, {"x": x})["out"], expected, rtol=1e-6)


def test_data_dependent_control_flow_is_refused():
    def f(x):
        return x if x.sum() > 0 else -x

    with pytest.raises(TypeError, match="truth value"):
        mlpc.trace(f, {"x": f32(2)})


def test_loss_ops_point_at_the_line_that_built_the_loss():
    model = nn.Sequential(nn.Linear(3, 2))
    loss = nn.MSELoss()  # this line
    trainer = mlpc.compile(model, loss, batch_size=2)
    (mse,) = [op for op in trainer.graph("traced").ops if op.name == "mse"]
    import inspect

    line = inspect.currentframe().f_lineno - 5
    assert mse.loc == f"test_tracing.py:{line}"
