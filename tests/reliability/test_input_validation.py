"""Bad input at Trainer.step/predict: clear InputErrors or documented conversions; backends see only checked arrays."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.errors import InputError
from runtime import backend as backend_mod
from runtime.backend import available_backends
from runtime.numpy_backend import NumpyBackend

from .backends import profile

BACKENDS = available_backends()
SEEN: list[dict[str, np.ndarray]] = []


class SpyBackend(NumpyBackend):
    """The NumPy backend, recording every data dict that reaches `Compiled.run`."""

    name = "spy"

    def lower(self, graph: Any, record: Any) -> Any:
        inner = super().lower(graph, record)

        class Spy:
            def run(self, state: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
                SEEN.append(dict(data))
                return inner.run(state, data)
        return Spy()


@pytest.fixture
def spy() -> Iterator[None]:
    backend_mod.register_backend("spy", SpyBackend)
    SEEN.clear()
    try:
        yield
    finally:
        backend_mod._BACKENDS.pop("spy", None)


def ce_trainer(backend: str = "numpy", batch: int = 8) -> mlpc.Trainer:
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    return mlpc.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=0.1), batch_size=batch, backend=backend)


def mse_trainer(backend: str = "numpy") -> mlpc.Trainer:
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    return mlpc.compile(model, nn.MSELoss(), optim.SGD(lr=0.1), batch_size=8, backend=backend)


RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 5)).astype(np.float32)
Y = RNG.integers(0, 3, 8).astype(np.int32)
T = RNG.standard_normal((8, 2)).astype(np.float32)

BAD_X = {
    "1-D": (X[0], "shape"),
    "3-D": (X[None], "shape"),
    "wrong width": (np.zeros((8, 4), np.float32), r"shape \[batch, 5\]"),
    "no rows": (np.zeros((0, 5), np.float32), "empty"),
    "too many rows": (np.zeros((9, 5), np.float32), "at most 8"),
    "complex": (X.astype(np.complex64), "real numbers"),
    "strings": (np.array([["a"] * 5] * 8), "real numbers"),
    "objects": (np.array([[object()] * 5] * 8), "real numbers"),
    "not an array": ("x", "NumPy array"),
    "NaN": (np.where(np.arange(40).reshape(8, 5) == 7, np.nan, X).astype(np.float32),
            r"NaN or Inf .*row 1, column 2"),
    "Inf": (np.where(np.arange(40).reshape(8, 5) == 0, np.inf, X).astype(np.float32), "NaN or Inf"),
    "f64 overflowing f32": (np.where(np.arange(40).reshape(8, 5) == 3, 1e300, X.astype(np.float64)),
                            "overflows float32"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(BAD_X))
def test_bad_features_are_rejected(backend: str, case: str) -> None:
    tr = ce_trainer(backend)
    before = tr.parameters()
    x, msg = BAD_X[case]
    with pytest.raises(InputError, match=msg):
        tr.step(x, Y)
    if case != "too many rows":  # predict takes any number of rows
        with pytest.raises(InputError, match=msg):
            tr.predict(x)
    assert tr.steps_taken == 0
    assert all(np.array_equal(v, before[k]) for k, v in tr.parameters().items())


BAD_LABELS = {
    "negative": (np.where(np.arange(8) == 2, -1, Y), "label -1 is out of range"),
    "too large": (np.where(np.arange(8) == 5, 3, Y), "label 3 is out of range"),
    "huge uint64": (np.where(np.arange(8) == 5, np.uint64(2 ** 63), Y.astype(np.uint64)), "out of range"),
    "float labels": (Y.astype(np.float32), "integers"),
    "bool labels": (Y.astype(bool), "integers"),
    "2-D labels": (Y[:, None], r"shape \[8\]"),
    "too few labels": (Y[:7], r"shape \[8\]"),
    "not an array": (3, "NumPy array"),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_bad_labels_are_rejected(case: str) -> None:
    tr = ce_trainer()
    y, msg = BAD_LABELS[case]
    with pytest.raises(InputError, match=msg):
        tr.step(X, y)
    assert tr.steps_taken == 0


@pytest.mark.parametrize("case", ["NaN", "Inf", "overflow", "shape", "strings"])
def test_bad_regression_targets_are_rejected(case: str) -> None:
    tr = mse_trainer()
    t = {"NaN": np.where(np.arange(16).reshape(8, 2) == 1, np.nan, T), "Inf": np.full((8, 2), -np.inf),
         "overflow": np.full((8, 2), 1e200), "shape": T[:, :1], "strings": np.full((8, 2), "1.0")}[case]
    with pytest.raises(InputError):
        tr.step(X, t)


def _misaligned(a: np.ndarray) -> np.ndarray:
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


CONVERTED_X = {
    "float64": lambda: X.astype(np.float64),
    "float16": lambda: X.astype(np.float16).astype(np.float32),  # exactly representable either way
    "int": lambda: np.round(X).astype(np.int64),
    "big-endian": lambda: X.astype(">f4"),
    "Fortran order": lambda: np.asfortranarray(X),
    "strided view": lambda: np.repeat(X, 2, axis=1)[:, ::2],
    "negative strides": lambda: X[::-1][::-1],
    "misaligned": lambda: _misaligned(X),
    "read-only": lambda: np.lib.stride_tricks.as_strided(X, writeable=False),
    "nested list": lambda: X.tolist(),
}


@pytest.mark.parametrize("case", sorted(CONVERTED_X))
def test_convertible_features_reach_the_backend_checked(spy: None, case: str) -> None:
    """Documented conversions: any real dtype, layout or alignment is copied to C-contiguous aligned float32."""
    x = CONVERTED_X[case]()
    want_x = np.asarray(x, dtype=np.float32)
    ref, tr = ce_trainer("numpy"), ce_trainer("spy")
    assert tr.step(x, Y.astype(np.int64)) == ref.step(want_x, Y)
    np.testing.assert_array_equal(tr.predict(x), ref.predict(want_x))
    assert SEEN, "the spy backend saw no calls"
    for data in SEEN:
        for name, a in data.items():
            assert isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.aligned, name
            assert a.dtype.isnative and a.dtype == (np.float32 if name == "x" else np.int32), (name, a.dtype)
            assert np.isfinite(a).all() if a.dtype.kind == "f" else True


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_and_single_row_batches(backend: str) -> None:
    tr, ref = ce_trainer(backend), ce_trainer("numpy")
    tol = profile(backend).loss_rtol
    for rows in (1, 3, 8):
        got, want = tr.step(X[:rows], Y[:rows]), ref.step(X[:rows], Y[:rows])
        assert abs(got - want) <= tol * max(1.0, abs(want))
    assert tr.predict(np.zeros((19, 5), np.float32)).shape == (19, 3)
