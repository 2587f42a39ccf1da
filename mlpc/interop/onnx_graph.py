"""A small builder of ONNX graphs: nodes with unique names, float32 initializers, scalar constants."""

from __future__ import annotations

from typing import Any

import numpy as np


class OnnxBuilder:
    """Collects nodes and initializers; `node` returns the name of the node's (single) output."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx, self.opset = onnx, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.prefix = ""
        self._count: dict[str, int] = {}

    def _unique(self, base: str) -> str:
        n = self._count.get(base, 0)
        self._count[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self._unique(f"{self.prefix}{hint}")
        arr = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def scalar(self, value: float) -> str:
        return self.const(np.asarray(value, dtype=np.float32), "const")

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        name = self._unique(f"{self.prefix}{op}")
        out = output or f"{name}_out"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=name, **attrs))
        return out
