"""ONNX in: an MLP graph (Gemm or MatMul+Add, activations) as an mlpc Sequential with its weights."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mlpc import nn
from mlpc.errors import InteropError
from mlpc.interop import deps, onnx_pointwise, table

MIN_OPSET = 13
DEFAULT_DOMAINS = ("", "ai.onnx")
OUTPUT = object()  # stands for "read by the graph's output" among a tensor's consumers


def from_onnx(path: str) -> nn.Sequential:
    """An mlpc Sequential computing the graph in `path`: one float input [batch, features], one output."""
    onnx = deps.onnx()
    proto = load(onnx, path)
    g = GraphView(onnx, proto, path)
    layers: list[nn.Module] = []
    t, width = g.input, g.in_features
    while t != g.output:
        module, t, width = g.next_layer(t, width)
        layers.append(module)
    if not layers:
        layers.append(nn.Identity())
    return nn.Sequential(*layers)


def load(onnx: Any, path: str) -> Any:
    """Read, check and opset-check an ONNX file; every failure is an InteropError naming the file."""
    if not os.path.isfile(path):
        raise InteropError(f"ONNX file {path} does not exist")
    try:
        proto = onnx.load(path)
    except Exception as e:  # protobuf's DecodeError and friends
        raise InteropError(f"{path} is not an ONNX model (cannot parse it: {e})") from None
    if not proto.graph.node and not proto.graph.input:
        raise InteropError(f"{path} is not an ONNX model (no graph)")
    versions = {o.domain: o.version for o in proto.opset_import}
    opset = next((versions[d] for d in DEFAULT_DOMAINS if d in versions), None)
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        raise InteropError(f"{path} imports no version of the default ONNX opset")
    if not MIN_OPSET <= opset <= newest:
        raise InteropError(f"{path} uses ONNX opset {opset}; mlpc reads opsets {MIN_OPSET} to {newest}")
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        raise InteropError(f"{path} is a malformed ONNX model: {str(e).strip().splitlines()[0]}") from None
    return proto


class GraphView:
    """Constants, consumers and the single float input/output of a graph; `next_layer` reads one layer."""

    def __init__(self, onnx: Any, proto: Any, path: str) -> None:
        self.onnx, self.path = onnx, path
        graph = proto.graph
        self.consts: dict[str, np.ndarray] = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
        self.nodes = []
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
                self.consts[node.output[0]] = self._constant_value(node)
            elif node.op_type == "Identity" and node.input[0] in self.consts:
                self.consts[node.output[0]] = self.consts[node.input[0]]
            else:
                self.nodes.append(node)
        for node in self.nodes:
            if node.domain not in DEFAULT_DOMAINS:
                raise InteropError(f"node {node.name or '?'} ({node.domain}::{node.op_type}) is a custom op; mlpc "
                                   "reads the default ONNX domain only")
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.nodes:
            for i in dict.fromkeys(node.input):  # a node reading a tensor twice is one consumer
                self.consumers.setdefault(i, []).append(node)
        self.input, self.in_features = self._input(graph)
        self.output = self._output(graph)
        self.consumers.setdefault(self.output, []).append(OUTPUT)

    def _constant_value(self, node: Any) -> np.ndarray:
        attr = node.attribute[0]
        if attr.name == "value":
            return self.onnx.numpy_helper.to_array(attr.t)
        return np.asarray(self.onnx.helper.get_attribute_value(attr))

    def _input(self, graph: Any) -> tuple[str, int]:
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise InteropError(f"{self.path} has {len(inputs)} graph inputs ({', '.join(i.name for i in inputs)}); "
                               "an MLP has one, [batch, features]")
        tt = inputs[0].type.tensor_type
        if tt.elem_type != self.onnx.TensorProto.FLOAT:
            name = self.onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else "unknown"
            raise InteropError(f"{self.path}: input {inputs[0].name} has dtype {name}; mlpc reads float32 models")
        dims = list(tt.shape.dim)
        if len(dims) != 2 or not dims[1].HasField("dim_value"):
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
            raise InteropError(f"{self.path}: input {inputs[0].name} has shape {shape}; mlpc needs "
                               "[batch, features] with a known number of features")
        return inputs[0].name, int(dims[1].dim_value)

    def _output(self, graph: Any) -> str:
        names = [o.name for o in graph.output]
        if len(names) == 1:
            return names[0]
        if "logits" in names:  # mlpc's own export with softmax=True: logits and probabilities
            return "logits"
        raise InteropError(f"{self.path} has {len(names)} outputs ({', '.join(names)}); mlpc reads graphs with one "
                           "(or one named `logits`)")

    def attrs(self, node: Any) -> dict[str, Any]:
        out = {}
        for a in node.attribute:
            v = self.onnx.helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def where(self, node: Any) -> str:
        return f"node {node.name or '?'} ({node.op_type})"

    # --- one layer at a time --------------------------------------------------------------------
    def next_layer(self, t: str, width: int) -> tuple[nn.Module, str, int]:
        users = self.consumers.get(t, [])
        if len(users) == 1 and users[0] is not OUTPUT:
            node = users[0]
            if node.op_type in ("Gemm", "MatMul") and node.input[0] == t:
                return self._linear(node, width)
            entry = _SINGLE.get(node.op_type)
            if entry is not None and len(node.input) == 1:
                return entry.from_onnx_attrs(self.attrs(node), self.where(node)), node.output[0], width
        if not users:
            raise InteropError(f"{self.path}: tensor {t} is not used and is not the output {self.output}")
        module, out, region = onnx_pointwise.find_region(t, self.nodes, self.consumers, self.consts, self.attrs)
        if module is not None and out is not None:
            return module, out, width
        if region:
            names = ", ".join(self.where(n) for n in region[:8]) + (", ..." if len(region) > 8 else "")
            raise InteropError(f"{self.path}: the elementwise nodes {names} compute none of mlpc's activations "
                               f"({', '.join(sorted({e.torch for e in table.ACTIVATIONS if e.exported}))})")
        node = next(u for u in users if u is not OUTPUT)
        raise InteropError(f"{self.path}: {self.where(node)} is not supported: mlpc reads Gemm, MatMul (+ Add of a "
                           f"bias) and the activations {', '.join(sorted(_SINGLE))} (docs/interop.md)")

    def _const(self, node: Any, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise InteropError(f"{self.path}: {self.where(node)} takes its {what} from {name}, which is not a "
                               "constant; mlpc reads MLPs whose weights are initializers")
        a = self.consts[name]
        if a.dtype.kind != "f":
            raise InteropError(f"{self.path}: {self.where(node)} has a {what} of dtype {a.dtype}")
        return a.astype(np.float64)

    def _linear(self, node: Any, width: int) -> tuple[nn.Module, str, int]:
        bias: np.ndarray | None = None
        if node.op_type == "Gemm":
            a = self.attrs(node)
            if a.get("transA", 0):
                raise InteropError(f"{self.path}: {self.where(node)} has transA=1; mlpc reads x @ W layers")
            w = self._const(node, node.input[1], "weight")
            w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
            if len(node.input) > 2 and node.input[2]:
                bias = self._bias(node, self._const(node, node.input[2], "bias") * a.get("beta", 1.0), w.shape[-1])
        else:
            w = self._const(node, node.input[1], "weight")
        if w.ndim != 2 or w.shape[0] != width:
            raise InteropError(f"{self.path}: {self.where(node)} has a weight of shape {list(w.shape)} for an "
                               f"input of {width} features")
        out = node.output[0]
        users = self.consumers.get(out, [])
        if len(users) == 1 and users[0] is not OUTPUT and users[0].op_type == "Add":
            add = users[0]
            other = [i for i in add.input if i != out]
            if len(other) == 1 and other[0] in self.consts:
                extra = self._bias(add, self._const(add, other[0], "bias"), w.shape[1])
                bias = extra if bias is None else bias + extra
                out = add.output[0]
        lin = nn.Linear(int(w.shape[0]), int(w.shape[1]), bias=bias is not None)
        lin.weight.data = np.ascontiguousarray(w, dtype=np.float32)
        if lin.bias is not None and bias is not None:
            lin.bias.data = np.ascontiguousarray(bias, dtype=np.float32)
        return lin, out, int(w.shape[1])

    def _bias(self, node: Any, c: np.ndarray, out: int) -> np.ndarray:
        if c.size == 1:
            return np.full(out, float(c.reshape(())))
        if c.shape in ((out,), (1, out)):
            return c.reshape(out)
        raise InteropError(f"{self.path}: {self.where(node)} adds a bias of shape {list(c.shape)} to {out} outputs; "
                           f"mlpc's Linear has a bias of [{out}]")


_SINGLE: dict[str, table.Activation] = {}
for _entry in table.ACTIVATIONS:
    if _entry.onnx is not None:
        _SINGLE.setdefault(_entry.onnx, _entry)
