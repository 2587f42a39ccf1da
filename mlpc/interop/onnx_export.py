"""ONNX out: the inference graph of a Trainer (or model) as an ONNX file, checked by onnx.checker."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc import nn
from mlpc.errors import InteropError
from mlpc.interop import deps, table
from mlpc.interop.onnx_graph import OnnxBuilder
from mlpc.interop.torch_out import local_params

MIN_OPSET = 17
PRODUCER = "mlpc"


def export_onnx(trainer: Any, path: str, softmax: bool = False, dynamic_batch: bool = False,
                opset: int = MIN_OPSET) -> Any:
    """Write `trainer`'s model with its trained weights to `path`; returns the onnx.ModelProto."""
    model_proto = build_model(trainer.model, trainer.parameters(), trainer.in_features,
                              None if dynamic_batch else trainer.batch_size, softmax, opset)
    onnx = deps.onnx()
    try:
        onnx.save(model_proto, path)
    except OSError as e:
        raise InteropError(f"cannot write {path}: {e.strerror or e}") from None
    return model_proto


def build_model(model: nn.Module, params: dict[str, np.ndarray], in_features: int, batch: int | None,
                softmax: bool = False, opset: int = MIN_OPSET) -> Any:
    """The ONNX ModelProto: input x [batch, in_features], output logits (+ probabilities)."""
    onnx = deps.onnx()
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest} (this onnx package's newest), "
                         f"got {opset!r}")
    if batch is not None and batch <= 0:
        raise ValueError(f"batch must be positive, got {batch}")
    b = OnnxBuilder(onnx, opset)
    logits = _emit(b, model, params, "", "x")
    b.node("Identity", [logits], output="logits")
    outputs = ["logits"]
    if softmax:
        b.node("Softmax", ["logits"], output="probabilities", axis=1)
        outputs.append("probabilities")
    first = "batch" if batch is None else batch
    out_features = _out_features(model, params, in_features)
    fp = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        b.nodes, "mlpc", [onnx.helper.make_tensor_value_info("x", fp, [first, in_features])],
        [onnx.helper.make_tensor_value_info(o, fp, [first, out_features]) for o in outputs],
        initializer=b.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    model_proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER)
    # the oldest IR version that carries this opset, so that older runtimes read the file too
    model_proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model_proto, full_check=True)
    return model_proto


def _emit(b: OnnxBuilder, module: nn.Module, params: dict[str, np.ndarray], path: str, x: str) -> str:
    if type(module) is nn.Sequential:
        for name, child in module.children():
            x = _emit(b, child, params, f"{path}.{name}" if path else name, x)
        return x
    if type(module) is nn.Residual:
        y = _emit(b, module.block, params, f"{path}.block" if path else "block", x)
        return b.node("Add", [x, y])
    if any(True for _ in module.children()):
        raise InteropError(f"module {path or '<root>'} ({type(module).__name__}) is a custom module: ONNX export "
                           "maps Sequential and Residual containers of built-in layers")
    entry = table.for_module(module, path)
    b.prefix = f"{path}." if path else ""
    try:
        return entry.emit_onnx(b, module, local_params(params, path, module), x)
    finally:
        b.prefix = ""


def _out_features(model: nn.Module, params: dict[str, np.ndarray], in_features: int) -> int:
    from mlpc.api import trace_model

    return int(trace_model(model, 1, in_features, None, "onnx").outputs[0].value.shape[1])

