"""The nan-guard pass and `mlpc.compile(..., nan_guard=True)`: a bad step raises and leaves weights untouched."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.errors import MlpcError, NumericalError
from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import DType, TensorType, f32
from passes.guard import nan_guard
from passes.manager import PassManager
from runtime.backend import available_backends

from .backends import budget, limits, run_cases
from .differential import compile_problem
from .fuzzing import count
from .strategies import Problem, problems

BACKENDS = available_backends()


def guarded_or_refused(build: Callable[[], mlpc.Trainer], backend: str) -> mlpc.Trainer | None:
    """A guarded trainer, or None when the backend refuses guarded graphs up front with a clear MlpcError
    (the triton backend requires optimizer updates written in place, which the guard's select rules out)."""
    try:
        return build()
    except MlpcError as e:
        assert "in place" in str(e) or "guard" in str(e), f"{backend} refused a guarded step unclearly: {e}"
        count(f"nan_guard refused by {backend} at compile time (clear error)")
        return None


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 17), nn.ReLU(), nn.Linear(17, 5))


def _state(tr: mlpc.Trainer) -> dict[str, np.ndarray]:
    return {**tr.parameters(), **tr.optimizer_state()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt", [optim.Adam(lr=0.01), optim.SGD(lr=0.1, momentum=0.9), optim.Momentum(lr=0.1)],
                         ids=["adam", "sgd-momentum", "momentum"])
def test_guard_stops_bad_step_and_keeps_state(backend: str, opt: optim.Optimizer) -> None:
    rng = np.random.default_rng(0)
    guarded = guarded_or_refused(lambda: mlpc.compile(_model(), nn.CrossEntropyLoss(), opt, batch_size=8,
                                                      backend=backend, nan_guard=True), backend)
    if guarded is None:
        return
    plain = mlpc.compile(_model(), nn.CrossEntropyLoss(), opt, batch_size=8, backend=backend)
    good = [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 5, 8)) for _ in range(3)]
    for x, y in good[:2]:
        assert guarded.step(x, y) == plain.step(x, y)
    before = _state(guarded)
    huge = np.full((8, 6), 3e38, np.float32)  # finite input whose logits overflow to Inf
    with pytest.raises(NumericalError, match=r"step 3\b"):
        guarded.step(huge, good[0][1])
    after = _state(guarded)
    for k in before:
        assert np.array_equal(after[k], before[k]), f"{k} changed in a rolled-back step"
    assert guarded.steps_taken == 2
    x, y = good[2]
    assert guarded.step(x, y) == plain.step(x, y)  # training goes on as if the bad batch never happened
    for k, v in _state(plain).items():
        assert np.array_equal(_state(guarded)[k], v), k


def test_guard_catches_a_nan_gradient_with_a_finite_loss() -> None:
    """Only the gradient is bad: loss = sum(p * 0) + 1 stays finite while g is NaN."""
    b = Builder()
    p, g, t = Value(f32(3), "p"), Value(f32(3), "g"), Value(TensorType(DType.i32, ()), "t")
    loss = b.add(b.sum(b.mul(p, b.scalar(0.0, p)), axes=[0]), b.scalar(1.0, p))
    new_p = b.sgd_update(p, g, t, b.scalar(0.5, p), b.scalar(0.0, p))  # lr, weight decay
    new_t = b.add(t, b.op("full", value=1.0, dtype="i32", shape=()))
    graph = Graph("step", [Input("g", g), Input("p", p, "param"), Input("t", t, "state")], b.ops,
                  [Output("loss", loss), Output("p", new_p), Output("t", new_t)])
    guarded = PassManager().run(graph, "nan_guard")
    p0 = np.array([1.0, 2.0, 3.0], np.float32)
    ok = interpret(guarded, {"g": np.ones(3, np.float32), "p": p0, "t": np.int32(4)})
    assert ok["nonfinite"] == 0.0 and np.array_equal(ok["p"], p0 - 0.5) and ok["t"] == 5
    bad = interpret(guarded, {"g": np.array([1.0, np.nan, 1.0], np.float32), "p": p0, "t": np.int32(4)})
    assert np.isnan(bad["nonfinite"]) and np.array_equal(bad["p"], p0) and bad["t"] == 4
    inf = interpret(guarded, {"g": np.array([np.inf, 0, 0], np.float32), "p": p0, "t": np.int32(4)})
    assert np.isnan(inf["nonfinite"]) and np.array_equal(inf["p"], p0)


def test_guard_refuses_graphs_without_updates_and_double_application() -> None:
    b = Builder()
    x = Value(f32(2), "x")
    g = Graph("f", [Input("x", x)], b.ops, [Output("loss", b.sum(x, axes=[0]))])
    with pytest.raises(MlpcError, match="optimizer"):
        nan_guard(g)
    tr = mlpc.compile(_model(), nn.CrossEntropyLoss(), optim.SGD(), batch_size=2, nan_guard=True)
    with pytest.raises(MlpcError, match="twice"):
        nan_guard(tr.graph("guarded"))


def test_unguarded_trainer_still_reports_the_step() -> None:
    tr = mlpc.compile(_model(), nn.CrossEntropyLoss(), optim.SGD(), batch_size=2)
    with pytest.raises(NumericalError, match="step 1"):
        tr.step(np.full((2, 6), 3e38, np.float32), [0, 1])


def test_guard_survives_checkpoint(tmp_path) -> None:
    tr = mlpc.compile(_model(), nn.CrossEntropyLoss(), optim.SGD(), batch_size=2, nan_guard=True)
    path = str(tmp_path / "g.safetensors")
    tr.save(path)
    back = mlpc.load(path)
    assert back.nan_guard
    with pytest.raises(NumericalError):
        back.step(np.full((2, 6), 3e38, np.float32), [0, 1])


def check_guard_is_transparent(backend: str, p: Problem) -> None:
    """Random architectures and optimizers: a guarded trainer's state is bit-identical to an unguarded one's."""
    guarded = guarded_or_refused(lambda: compile_problem(p, backend, nan_guard=True), backend)
    if guarded is None:
        return
    count(f"nan_guard vs plain trainer on {backend}")
    plain = compile_problem(p, backend)
    for x, y in p.batches:
        before = _state(guarded)
        try:
            loss = plain.step(x, y)
        except NumericalError:  # a diverging problem: the guard must stop at the same step, state untouched
            with pytest.raises(NumericalError):
                guarded.step(x, y)
            assert all(v.tobytes() == before[k].tobytes() for k, v in _state(guarded).items())
            return
        assert guarded.step(x, y) == loss
    want = _state(plain)
    for k, v in _state(guarded).items():
        assert v.tobytes() == want[k].tobytes(), k


@pytest.mark.parametrize("backend", BACKENDS)
def test_guard_never_changes_a_good_step(backend: str) -> None:
    limit = {"max_width": 64, "max_batch": 33, "max_depth": 4, **limits(backend)}
    run_cases(problems(**limit), budget(backend, 15), lambda p: check_guard_is_transparent(backend, p))
