"""Clear refusals: unsupported torch layers, optimizers and losses; ONNX ops, opsets and malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import mlpc
from mlpc.errors import InteropError


# --- torch layers ----------------------------------------------------------------------------------
class MyLinear(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


@pytest.mark.parametrize("module, match", [
    (torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Conv1d(1, 1, 1)), r"layer 1 \(torch.nn.modules.conv.Conv1d\)"),
    (torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Softmax(dim=1))),
     r"layer 1\.1 \(.*Softmax\) is not supported: mlpc maps torch.nn Sequential, Linear"),
    (torch.nn.Sequential(MyLinear(3, 4)), r"layer 0 \(.*MyLinear\)"),
    (torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU()), r"layer 1 \(GELU\) has approximate='none'"),
    (torch.nn.Sequential(torch.nn.Flatten(start_dim=0)), r"start_dim=0"),
    (torch.nn.ModuleList([torch.nn.Linear(3, 4)]), r"layer <root> \(.*ModuleList\)"),
])
def test_unsupported_torch_layers(module: torch.nn.Module, match: str) -> None:
    with pytest.raises(InteropError, match=match):
        mlpc.from_torch(module)


def test_from_torch_takes_torch_modules() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        mlpc.from_torch(mlpc.nn.Sequential(mlpc.nn.Linear(2, 2)))


def test_example_input_checks_shapes() -> None:
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert isinstance(mlpc.from_torch(tm, example_input=np.zeros((5, 3), np.float32)), mlpc.nn.Sequential)
    with pytest.raises(InteropError, match=r"torch module fails on example_input of shape \[5, 6\]"):
        mlpc.from_torch(tm, example_input=torch.zeros(5, 6))
    with pytest.raises(InteropError, match=r"example_input must have shape \[batch, features\].*\[5, 1, 3\]"):
        mlpc.from_torch(tm, example_input=torch.zeros(5, 1, 3))
    assert tm.training  # the module's mode is restored


# --- optimizers and losses ---------------------------------------------------------------------------
def params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(2, 2).parameters())


def test_optimizer_hyperparameters_map_exactly() -> None:
    sgd = mlpc.from_torch_optimizer(torch.optim.SGD(params(), lr=0.3, momentum=0.7, dampening=0.0, nesterov=True,
                                                    weight_decay=0.01))
    assert sgd == mlpc.optim.SGD(lr=0.3, momentum=0.7, dampening=0.0, nesterov=True, weight_decay=0.01)
    adam = mlpc.from_torch_optimizer(torch.optim.Adam(params(), lr=0.002, betas=(0.5, 0.6), eps=1e-6,
                                                      weight_decay=0.1))
    assert adam == mlpc.optim.Adam(lr=0.002, betas=(0.5, 0.6), eps=1e-6, weight_decay=0.1)
    adamw = mlpc.from_torch_optimizer(torch.optim.AdamW(params(), lr=0.004))
    assert adamw == mlpc.optim.AdamW(lr=0.004, weight_decay=0.01)
    assert mlpc.from_torch_optimizer(torch.optim.Adam(params(), lr=torch.tensor(0.01))).lr == pytest.approx(0.01)


def test_unsupported_optimizers() -> None:
    with pytest.raises(InteropError, match=r"torch.optim.rmsprop.RMSprop is not supported: mlpc maps torch.optim "
                                           "SGD, Adam, AdamW"):
        mlpc.from_torch_optimizer(torch.optim.RMSprop(params()))
    with pytest.raises(InteropError, match=r"Adam\(amsgrad=True\)"):
        mlpc.from_torch_optimizer(torch.optim.Adam(params(), amsgrad=True))
    with pytest.raises(InteropError, match=r"SGD\(maximize=True\)"):
        mlpc.from_torch_optimizer(torch.optim.SGD(params(), lr=0.1, maximize=True))
    lin = torch.nn.Linear(2, 2)
    groups = [{"params": [lin.weight]}, {"params": [lin.bias], "weight_decay": 0.0}]
    with pytest.raises(InteropError, match="2 param groups"):
        mlpc.from_torch_optimizer(torch.optim.AdamW(groups))
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    lin(torch.ones(1, 2)).sum().backward()
    opt.step()
    with pytest.raises(InteropError, match="already taken steps"):
        mlpc.from_torch_optimizer(opt)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        mlpc.from_torch_optimizer(mlpc.optim.SGD())


def test_losses() -> None:
    assert isinstance(mlpc.from_torch_loss(torch.nn.CrossEntropyLoss()), mlpc.nn.CrossEntropyLoss)
    assert isinstance(mlpc.from_torch_loss(torch.nn.MSELoss()), mlpc.nn.MSELoss)
    for loss, match in [(torch.nn.L1Loss(), r"torch.nn.modules.loss.L1Loss is not supported"),
                        (torch.nn.CrossEntropyLoss(label_smoothing=0.1), "label_smoothing=0.1"),
                        (torch.nn.MSELoss(reduction="sum"), "reduction='sum'"),
                        (torch.nn.CrossEntropyLoss(weight=torch.ones(3)), "weight=<tensor>"),
                        (torch.nn.CrossEntropyLoss(ignore_index=0), "ignore_index=0")]:
        with pytest.raises(InteropError, match=match):
            mlpc.from_torch_loss(loss)


# --- ONNX files ------------------------------------------------------------------------------------
def write(path: Path, nodes: list, inits: list, opset: int = 17, shape: tuple = ("n", 3),
          outputs: tuple[str, ...] = ("y",), domain_opsets: tuple = ()) -> str:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", None]) for o in outputs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *domain_opsets])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


W = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")


def test_unsupported_onnx_op(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Softmax", ["h"], ["y"], name="probs", axis=1)]
    with pytest.raises(InteropError, match=r"node probs \(Softmax\) is not supported: mlpc reads Gemm, MatMul"):
        mlpc.from_onnx(write(tmp_path / "m.onnx", nodes, [W]))


def test_unrecognised_elementwise_region(tmp_path: Path) -> None:
    c = numpy_helper.from_array(np.asarray(3.0, np.float32), "c")
    nodes = [helper.make_node("Mul", ["x", "c"], ["y"], name="triple")]
    with pytest.raises(InteropError, match=r"node triple \(Mul\) compute none of mlpc's activations"):
        mlpc.from_onnx(write(tmp_path / "m.onnx", nodes, [c]))


def test_weights_must_be_constants(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "x"], ["y"], name="square")]
    with pytest.raises(InteropError, match="not a constant"):
        mlpc.from_onnx(write(tmp_path / "m.onnx", nodes, [], shape=("n", 3)))


def test_custom_domain(tmp_path: Path) -> None:
    nodes = [helper.make_node("Fancy", ["x"], ["y"], name="f", domain="com.example")]
    path = write(tmp_path / "m.onnx", nodes, [], domain_opsets=(helper.make_opsetid("com.example", 1),))
    with pytest.raises(InteropError, match=r"node f \(com.example::Fancy\) is a custom op"):
        mlpc.from_onnx(path)


@pytest.mark.parametrize("opset, match", [(9, "uses ONNX opset 9; mlpc reads opsets 13 to"),
                                          (1000, "uses ONNX opset 1000")])
def test_unsupported_opsets(tmp_path: Path, opset: int, match: str) -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    with pytest.raises(InteropError, match=match):
        mlpc.from_onnx(write(tmp_path / "m.onnx", nodes, [W], opset=opset))


def test_export_opset_range(tmp_path: Path) -> None:
    trainer = mlpc.compile(mlpc.nn.Sequential(mlpc.nn.Linear(3, 2)), batch_size=2, backend="numpy")
    with pytest.raises(ValueError, match="opset must be an integer from 17"):
        trainer.export_onnx(str(tmp_path / "m.onnx"), opset=16)


def test_malformed_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InteropError, match=r"garbage.onnx is not an ONNX model"):
        mlpc.from_onnx(str(garbage))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InteropError, match=r"empty.onnx is not an ONNX model"):
        mlpc.from_onnx(str(empty))
    good = write(tmp_path / "good.onnx", [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [W])
    data = Path(good).read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(InteropError, match=r"cut.onnx is (not an ONNX model|a malformed ONNX model)"):
        mlpc.from_onnx(str(tmp_path / "cut.onnx"))
    dangling = write(tmp_path / "dangling.onnx", [helper.make_node("MatMul", ["x", "nowhere"], ["y"], name="mm")], [])
    with pytest.raises(InteropError, match=r"dangling.onnx is a malformed ONNX model"):
        mlpc.from_onnx(dangling)
    with pytest.raises(InteropError, match="does not exist"):
        mlpc.from_onnx(str(tmp_path / "missing.onnx"))


def test_input_and_output_checks(tmp_path: Path) -> None:
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    with pytest.raises(InteropError, match=r"input x has shape \['n', 2, 3\]"):
        mlpc.from_onnx(write(tmp_path / "a.onnx", [node], [W], shape=("n", 2, 3)))
    with pytest.raises(InteropError, match=r"weight of shape \[3, 2\] for an input of 4 features"):
        mlpc.from_onnx(write(tmp_path / "b.onnx", [node], [W], shape=("n", 4)))
    two = [node, helper.make_node("Relu", ["y"], ["z"], name="r")]
    with pytest.raises(InteropError, match="has 2 outputs"):
        mlpc.from_onnx(write(tmp_path / "c.onnx", two, [W], outputs=("y", "z")))


def test_gemm_attributes_are_applied(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    b, c = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(1, 2)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="g", alpha=0.5, beta=2.0, transB=1)]
    path = write(tmp_path / "m.onnx", nodes, [numpy_helper.from_array(b, "B"), numpy_helper.from_array(c, "C")])
    trainer = mlpc.compile(mlpc.from_onnx(path), loss=mlpc.nn.MSELoss(), batch_size=4, backend="numpy")
    x = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(trainer.predict(x), 0.5 * x @ b.T + 2.0 * c, rtol=1e-6, atol=1e-6)
    with pytest.raises(InteropError, match="transA=1"):
        mlpc.from_onnx(write(tmp_path / "t.onnx", [helper.make_node("Gemm", ["x", "B"], ["y"], name="g",
                                                                      transA=1)],
                             [numpy_helper.from_array(b, "B")]))


# --- to_torch / export of custom modules --------------------------------------------------------------
class Doubler(mlpc.nn.Module):
    def forward(self, x):  # type: ignore[no-untyped-def]
        return x * 2


def test_custom_modules_have_no_counterpart(tmp_path: Path) -> None:
    trainer = mlpc.compile(mlpc.nn.Sequential(mlpc.nn.Linear(3, 2), Doubler()), batch_size=2, backend="numpy")
    with pytest.raises(InteropError, match=r"module 1 \(Doubler\) has no PyTorch/ONNX counterpart"):
        trainer.to_torch()
    with pytest.raises(InteropError, match=r"module 1 \(Doubler\)"):
        trainer.export_onnx(str(tmp_path / "m.onnx"))
    residual = mlpc.compile(mlpc.nn.Sequential(mlpc.nn.Linear(3, 3), mlpc.nn.Residual(mlpc.nn.Linear(3, 3))),
                            batch_size=2, backend="numpy")
    with pytest.raises(InteropError, match=r"module 1 \(Residual\) has no PyTorch counterpart"):
        residual.to_torch()


def test_cli_refuses_an_old_opset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlpc.cli import main

    assert main(["export-onnx", "-o", str(tmp_path / "m.onnx"), "--opset", "16"]) == 2
    assert "argument --opset: expected an integer >= 17, got 16" in capsys.readouterr().err
