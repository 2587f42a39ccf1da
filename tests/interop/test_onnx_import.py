"""from_onnx on files written by torch.onnx.export (TorchScript and dynamo exporters) and by mlpc itself."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import mlpc
from tests.interop.models import data, forward, mlps

TOL = 1e-5  # issue 14's bound; measured over 40 random MLPs: 2.4e-7 against torch


def torch_export(tm: torch.nn.Module, width: int, path: Path, dynamo: bool) -> None:
    kw = {} if dynamo else {"opset_version": 17}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tm, (torch.zeros(4, width),), str(path), input_names=["x"], output_names=["y"],
                          dynamo=dynamo, verbose=False, **kw)


def check_equal(path: Path, tm: torch.nn.Module, width: int) -> mlpc.nn.Sequential:
    model = mlpc.from_onnx(str(path))
    trainer = mlpc.compile(model, loss=mlpc.nn.MSELoss(), batch_size=16, backend="numpy", in_features=width)
    x = data(21, width, seed=2)
    np.testing.assert_allclose(trainer.predict(x), forward(tm, x), rtol=TOL, atol=TOL)
    return model


@settings(max_examples=20)
@given(mlps())
def test_torchscript_exporter_files_load(tmp_path_factory: pytest.TempPathFactory,
                                         case: tuple[torch.nn.Sequential, int]) -> None:
    tm, width = case
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    torch_export(tm, width, path, dynamo=False)
    check_equal(path, tm, width)


ALL_LAYERS = [torch.nn.Linear(7, 9), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(9, 5, bias=False),
              torch.nn.LeakyReLU(0.3), torch.nn.Sequential(torch.nn.Linear(5, 11), torch.nn.Sigmoid()),
              torch.nn.Identity(), torch.nn.Flatten(), torch.nn.Linear(11, 3), torch.nn.Tanh(),
              torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1, bias=False)]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_every_layer_through_both_exporters(tmp_path: Path, dynamo: bool) -> None:
    torch.manual_seed(0)
    tm = torch.nn.Sequential(*ALL_LAYERS).eval()
    torch_export(tm, 7, tmp_path / "m.onnx", dynamo=dynamo)
    model = check_equal(tmp_path / "m.onnx", tm, 7)
    kinds = [type(model[i]).__name__ for i in range(len(model))]
    assert kinds.count("Linear") == 6 and "GELU" in kinds and "LeakyReLU" in kinds


@settings(max_examples=10)
@given(mlps(max_depth=3))
def test_dynamo_exporter_files_load(tmp_path_factory: pytest.TempPathFactory,
                                    case: tuple[torch.nn.Sequential, int]) -> None:
    tm, width = case
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    torch_export(tm, width, path, dynamo=True)
    check_equal(path, tm, width)


@pytest.mark.parametrize("opset", [17, 20])
def test_mlpc_export_round_trips(tmp_path: Path, opset: int) -> None:
    model = mlpc.nn.Sequential(mlpc.nn.Linear(5, 7), mlpc.nn.GELU(), mlpc.nn.Linear(7, 3, bias=False),
                               mlpc.nn.LeakyReLU(0.1), mlpc.nn.Linear(3, 2))
    trainer = mlpc.compile(model, batch_size=4, backend="numpy")
    trainer.export_onnx(str(tmp_path / "m.onnx"), softmax=True, dynamic_batch=True, opset=opset)
    again = mlpc.compile(mlpc.from_onnx(str(tmp_path / "m.onnx")), batch_size=4, backend="numpy")
    x = data(9, 5)
    np.testing.assert_allclose(again.predict(x), trainer.predict(x), rtol=TOL, atol=TOL)
    for name, value in trainer.state_dict().items():
        np.testing.assert_allclose(again.state_dict()[name], value, rtol=1e-7, atol=0)


def test_imported_model_fine_tunes(tmp_path: Path) -> None:
    torch.manual_seed(1)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()
    torch_export(tm, 4, tmp_path / "m.onnx", dynamo=False)
    trainer = mlpc.compile(mlpc.from_onnx(str(tmp_path / "m.onnx")), optimizer=mlpc.optim.SGD(lr=0.1),
                           batch_size=8, backend="numpy")
    x, y = data(8, 4), np.arange(8) % 3
    first = trainer.step(x, y)
    for _ in range(20):
        last = trainer.step(x, y)
    assert last < first
