"""Torch CPU tensors as data (viewed, not copied), state_dict layouts, and the missing-extra error."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import mlpc
from mlpc import validate
from mlpc.errors import InputError, InteropError
from mlpc.interop import deps


def trainer(backend: str = "numpy") -> mlpc.Trainer:
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    return mlpc.compile(mlpc.from_torch(tm), optimizer=mlpc.optim.SGD(lr=0.1), batch_size=8, backend=backend)


def test_float32_tensor_is_viewed_not_copied() -> None:
    t = torch.randn(5, 4)
    x = validate.features(t, 4, None)
    assert np.shares_memory(x, t.numpy())
    grad = torch.randn(5, 4, requires_grad=True)
    assert np.shares_memory(validate.features(grad, 4, None), grad.detach().numpy())


def test_tensors_needing_conversion_are_converted() -> None:
    t = torch.randn(4, 5).T  # not C-contiguous: one copy into the compiled step's layout
    np.testing.assert_array_equal(validate.features(t, 4, None), t.numpy())
    d = torch.randn(3, 4, dtype=torch.float64)
    np.testing.assert_array_equal(validate.features(d, 4, None), d.numpy().astype(np.float32))
    with pytest.raises(InputError, match=r"x \(dtype torch.bfloat16\) cannot be read as a NumPy array"):
        validate.features(torch.zeros(2, 4, dtype=torch.bfloat16), 4, None)


class FakeDeviceTensor:
    device = "cuda:0"

    def __dlpack__(self, **kw: Any) -> None:
        raise AssertionError("must not be read")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)  # kDLCUDA


def test_accelerator_tensors_are_refused() -> None:
    with pytest.raises(InputError, match=r"x lives on an accelerator \(cuda:0\): move it to the CPU"):
        validate.features(FakeDeviceTensor(), 4, None)


def test_step_predict_evaluate_batches_fit_take_tensors() -> None:
    a, b = trainer(), trainer()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4)).astype(np.float32)
    y = (np.arange(20) % 3).astype(np.int64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert a.step(xt[:8], yt[:8]) == b.step(x[:8], y[:8])
    np.testing.assert_array_equal(a.predict(xt), b.predict(x))
    assert a.evaluate(xt, yt) == b.evaluate(x, y)
    for (xa, ya), (xb, yb) in zip(a.batches(xt, yt, seed=3), b.batches(x, y, seed=3)):
        assert isinstance(xa, np.ndarray) and isinstance(ya, np.ndarray)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert a.fit(xt, yt, epochs=2) == b.fit(x, y, epochs=2)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    with pytest.raises(InputError, match=r"label 5 is out of range"):
        a.step(xt[:2], torch.tensor([0, 5]))


def test_state_dict_layouts_round_trip() -> None:
    t = trainer()
    mine, theirs = t.state_dict(), t.state_dict(layout="torch")
    assert list(mine) == ["0.weight", "0.bias", "2.weight", "2.bias"] == list(theirs)
    assert mine["0.weight"].shape == (4, 6) and theirs["0.weight"].shape == (6, 4)
    np.testing.assert_array_equal(mine["0.weight"].T, theirs["0.weight"])
    other = trainer()
    other.step(np.ones((8, 4), np.float32), np.zeros(8, np.int64))
    assert not np.array_equal(other.state_dict()["0.weight"], mine["0.weight"])
    other.load_state_dict({k: torch.from_numpy(v) for k, v in theirs.items()}, layout="torch")
    for k, v in mine.items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    other.load_state_dict(mine)
    np.testing.assert_array_equal(other.predict(np.ones((2, 4))), t.predict(np.ones((2, 4))))
    mine["0.weight"][:] = 0  # a copy, not the trainer's memory
    assert np.any(t.state_dict()["0.weight"] != 0)


def test_state_dict_from_a_torch_module_loads() -> None:
    torch.manual_seed(9)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    t = trainer()
    t.load_state_dict(tm.state_dict(), layout="torch")
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(t.predict(x), tm(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_state_dict_mismatches_say_what_is_wrong() -> None:
    t = trainer()
    torch_sd = t.state_dict(layout="torch")
    with pytest.raises(InteropError, match=r"0.weight: shape \[6, 4\] .* is its transpose: torch stores Linear "
                                           r"weights as \[out, in\].*layout='torch'"):
        t.load_state_dict(torch_sd)
    with pytest.raises(mlpc.MlpcError, match=r"is its transpose.*layout='torch'"):
        t.load_state({"0.weight": torch_sd["0.weight"]})
    with pytest.raises(InteropError, match=r"\[4, 6\] is mlpc's \[in, out\] layout but layout='torch'"):
        t.load_state_dict(t.state_dict(), layout="torch")
    with pytest.raises(InteropError, match=r"missing \['2.bias'\]; unexpected \['2.bias_'\]"):
        t.load_state_dict({**{k: v for k, v in torch_sd.items() if k != "2.bias"}, "2.bias_": np.zeros(3)},
                          layout="torch")
    partial = {"2.bias": np.full(3, 0.5, np.float32)}
    t.load_state_dict(partial, strict=False)
    np.testing.assert_array_equal(t.state_dict()["2.bias"], partial["2.bias"])
    with pytest.raises(ValueError, match="layout must be one of 'mlpc', 'torch'"):
        t.state_dict(layout="tf")


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = deps.importlib.import_module

    def without_onnx(name: str) -> Any:
        if name.split(".")[0] == "onnx":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name)

    monkeypatch.setattr(deps.importlib, "import_module", without_onnx)
    with pytest.raises(deps.MissingExtraError, match=r"needs the `onnx` package.*pip install 'mlpc\[interop\]'"):
        mlpc.from_onnx("model.onnx")
    trainer_ = trainer()
    with pytest.raises(ImportError, match="interop"):  # also an ImportError, for code that catches those
        trainer_.export_onnx("model.onnx")
    assert deps.torch() is torch
