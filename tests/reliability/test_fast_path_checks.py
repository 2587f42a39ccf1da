"""The per-step fast paths (validate.features/targets, LlvmCompiled.run) keep every input check: the same
arrays passed again are still checked for their values, and each bad input gets the same error as before."""

from __future__ import annotations

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.errors import InputError

BACKENDS = ["llvm", "numpy"]


def _trainer(backend: str, batch: int = 4) -> mlpc.Trainer:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3))
    return mlpc.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=1e-2), batch_size=batch, backend=backend)


def _params(tr: mlpc.Trainer) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tr.state_dict().items()}


@pytest.fixture(params=BACKENDS)
def tr(request):
    return _trainer(request.param)


X = np.arange(8, dtype=np.float32).reshape(4, 2) / 8
Y = np.array([0, 1, 2, 1], np.int32)


@pytest.mark.parametrize("bad, match", [
    (np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"), (-np.inf, "NaN or Inf"),
])
def test_nonfinite_x_is_refused_every_call_even_for_the_same_array(tr, bad, match):
    x = X.copy()
    tr.step(x, Y)
    tr.step(x, Y)
    before = _params(tr)
    x[2, 1] = bad  # same object, new contents: the value check runs on every call
    with pytest.raises(InputError, match=match):
        tr.step(x, Y)
    after = _params(tr)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    x[2, 1] = 0.5
    assert np.isfinite(tr.step(x, Y))


def test_nonfinite_in_a_large_batch_is_found(tr):
    big = _trainer(tr.backend_name, batch=100)  # more elements than validate.SMALL: the NumPy reduction path
    x = np.zeros((100, 2), np.float32)
    y = np.zeros(100, np.int32)
    big.step(x, y)
    x[93, 1] = np.inf
    with pytest.raises(InputError, match=r"NaN or Inf \(first at row 93, column 1\)"):
        big.step(x, y)
    x[93, 1] = 0
    y[50] = 3
    with pytest.raises(InputError, match="label 3 is out of range"):
        big.step(x, y)


@pytest.mark.parametrize("label", [3, -1, 2 ** 31 - 1])
def test_out_of_range_labels_are_refused_before_anything_changes(tr, label):
    y = Y.copy()
    tr.step(X, y)
    before = _params(tr)
    y[1] = label  # int32, C-contiguous: the fast path (on llvm the step's native check)
    with pytest.raises(InputError, match=f"label {label} is out of range: the model has 3 classes"):
        tr.step(X, y)
    after = _params(tr)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert tr.steps_taken == 1


@pytest.mark.parametrize("x, match", [
    (np.zeros((4, 3), np.float32), r"x must have shape \[batch, 2\], got \[4, 3\]"),
    (np.zeros((5, 2), np.float32), "compiled for batches of at most 4"),
    (np.zeros((0, 2), np.float32), "empty"),
    (np.zeros(8, np.float32), r"x must have shape \[batch, 2\]"),
    (np.zeros((4, 2), np.complex64), "must hold real numbers"),
    (np.array([["a", "b"]] * 4), "must hold real numbers"),
])
def test_bad_x_is_refused(tr, x, match):
    with pytest.raises(InputError, match=match):
        tr.step(x, Y)


@pytest.mark.parametrize("y, match", [
    (np.zeros(3, np.int32), r"y must have shape \[4\]"),
    (np.zeros(4, np.float32), "labels must be integers"),
    (np.zeros((4, 1), np.int32), r"y must have shape \[4\]"),
])
def test_bad_y_is_refused(tr, y, match):
    with pytest.raises(InputError, match=match):
        tr.step(X, y)


def test_other_layouts_and_dtypes_take_the_general_path_with_the_same_result():
    a, b = _trainer("llvm"), _trainer("llvm")
    wide = np.zeros((4, 4), np.float32)
    wide[:, ::2] = X
    swapped = X.astype(X.dtype.newbyteorder(">"))
    for x, y in [(wide[:, ::2], Y), (X.astype(np.float64), Y.astype(np.int64)), (swapped, Y),
                 (X.tolist(), Y.tolist())]:
        assert a.step(x, y) == b.step(X.copy(), Y.copy())


def test_raw_llvm_step_rechecks_a_reused_array_whose_shape_changed():
    tr = _trainer("llvm")
    compiled = tr._compiled_for("step", 4)
    x, y = X.copy(), Y.copy()
    compiled.run(tr._state, {"x": x, "y": y})
    x.shape = (2, 4)  # the same object, reshaped in place
    with pytest.raises(InputError, match=r"input 'x' has shape \[2, 4\], the compiled step expects \[4, 2\]"):
        compiled.run(tr._state, {"x": x, "y": y})
    y[0] = 7
    x.shape = (4, 2)
    with pytest.raises(InputError, match="label 7 is out of range"):
        compiled.run(tr._state, {"x": x, "y": y})
    with pytest.raises(InputError, match="missing data input 'y'"):
        compiled.run(tr._state, {"x": x})
