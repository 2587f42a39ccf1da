"""export_onnx on random MLPs: onnx.checker passes, onnxruntime equals predict (1e-5), fixed and dynamic batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mlpc
from tests.interop.models import data, mlps

TOL = 1e-5  # issue 14's bound; measured over 40 random MLPs: 1.2e-7 against onnxruntime


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compiled(case: tuple[torch.nn.Sequential, int], batch: int = 8) -> mlpc.Trainer:
    tm, width = case
    return mlpc.compile(mlpc.from_torch(tm), loss=mlpc.nn.MSELoss(), batch_size=batch, backend="numpy",
                        in_features=width)


@settings(max_examples=25)
@given(mlps(), st.sampled_from([17, 20]), st.booleans())
def test_onnxruntime_equals_predict(tmp_path_factory: pytest.TempPathFactory,
                                    case: tuple[torch.nn.Sequential, int], opset: int, softmax: bool) -> None:
    trainer = compiled(case)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    trainer.export_onnx(str(path), softmax=softmax, opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == (["logits", "probabilities"] if softmax else ["logits"])
    assert proto.opset_import[0].version == opset
    x = data(8, case[1], seed=1)
    outs = session(path).run(None, {"x": x})
    np.testing.assert_allclose(outs[0], trainer.predict(x), rtol=TOL, atol=TOL)
    if softmax:
        logits = trainer.predict(x).astype(np.float64)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(outs[1], p / p.sum(axis=1, keepdims=True), rtol=TOL, atol=TOL)


@settings(max_examples=15)
@given(mlps())
def test_dynamic_batch(tmp_path_factory: pytest.TempPathFactory, case: tuple[torch.nn.Sequential, int]) -> None:
    trainer = compiled(case)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    trainer.export_onnx(str(path), dynamic_batch=True)
    dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.HasField("dim_value")
    sess = session(path)
    for rows in (1, 8, 29):
        x = data(rows, case[1], seed=rows)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], trainer.predict(x), rtol=TOL, atol=TOL)


def test_fixed_batch_is_the_batch_size(tmp_path: Path) -> None:
    trainer = mlpc.compile(mlpc.nn.Sequential(mlpc.nn.Linear(5, 3)), batch_size=6, backend="numpy")
    trainer.export_onnx(str(tmp_path / "m.onnx"))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [6, 5]
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Identity"]


def test_trained_weights_are_exported(tmp_path: Path) -> None:
    model = mlpc.nn.Sequential(mlpc.nn.Linear(4, 7), mlpc.nn.ReLU(), mlpc.nn.Linear(7, 3))
    trainer = mlpc.compile(model, optimizer=mlpc.optim.SGD(lr=0.5), batch_size=16, backend="numpy")
    x, y = data(16, 4), np.arange(16) % 3
    before = trainer.predict(x)
    for _ in range(3):
        trainer.step(x, y)
    trainer.export_onnx(str(tmp_path / "m.onnx"))
    out = session(tmp_path / "m.onnx").run(None, {"x": x})[0]
    np.testing.assert_allclose(out, trainer.predict(x), rtol=TOL, atol=TOL)
    assert np.abs(out - before).max() > 1e-3


def test_residual_exports_as_add(tmp_path: Path) -> None:
    model = mlpc.nn.Sequential(mlpc.nn.Linear(4, 6), mlpc.nn.Residual(mlpc.nn.Sequential(mlpc.nn.Linear(6, 6),
                                                                                        mlpc.nn.Tanh())))
    trainer = mlpc.compile(model, batch_size=5, backend="numpy")
    trainer.export_onnx(str(tmp_path / "m.onnx"))
    x = data(5, 4)
    np.testing.assert_allclose(session(tmp_path / "m.onnx").run(None, {"x": x})[0], trainer.predict(x),
                               rtol=TOL, atol=TOL)


def test_cli_export_onnx_with_checkpoint(tmp_path: Path) -> None:
    model_file = tmp_path / "model.py"
    model_file.write_text("from mlpc import nn\nmodel = nn.Sequential(nn.Linear(6, 9), nn.GELU(), nn.Linear(9, 3))\n"
                         "batch_size = 4\n")
    trainer = mlpc.compile(mlpc.nn.Sequential(mlpc.nn.Linear(6, 9), mlpc.nn.GELU(), mlpc.nn.Linear(9, 3)),
                           batch_size=4, backend="numpy", seed=11, optimizer=mlpc.optim.SGD(lr=0.1, momentum=0.9))
    trainer.step(data(4, 6), np.array([0, 1, 2, 0]))
    trainer.save(str(tmp_path / "ckpt.safetensors"))
    out = tmp_path / "m.onnx"
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-m", "mlpc.cli", "export-onnx", str(model_file), "-o", str(out),
                          "--checkpoint", str(tmp_path / "ckpt.safetensors"), "--dynamic-batch", "--softmax"],
                         capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""})
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout
    x = data(11, 6)
    logits, probs = session(out).run(None, {"x": x})
    np.testing.assert_allclose(logits, trainer.predict(x), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
