"""The reference backend: runs graphs with the NumPy interpreter."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc.interpreter import Interpreter
from mlpc.ir import Graph, Op
from mlpc.precision import bf16_matmul, check_cpu
from runtime.backend import Record, register_backend


class Bf16Interpreter(Interpreter):
    """The reference with bf16 matmul semantics: operands rounded to bf16 (ties to even), fp32-exact products
    summed in float64 (mlpc.precision.bf16_matmul); every other op as in fp32."""

    def run_op(self, op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
        if op.name != "matmul":
            return super().run_op(op, args)
        out = bf16_matmul(args[0], args[1], bool(op.attrs["transpose_a"]), bool(op.attrs["transpose_b"]))
        return [np.asarray(out, dtype=op.result.type.dtype.numpy).reshape(op.result.type.shape)]


class NumpyCompiled:
    def __init__(self, graph: Graph, precision: str = "fp32") -> None:
        self.graph = graph
        self.interpreter = Bf16Interpreter(graph) if precision == "bf16" else Interpreter(graph)
        self.state_names = {i.name for i in graph.inputs if i.role != "data"}

    def run(self, state: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, Any]:
        env = dict(data)
        for name in self.state_names:
            env[name] = state[name]
        outs = self.interpreter.run(env)
        result = {}
        for name, value in outs.items():
            if name in state:
                # a state must own its buffer: an output that is (a view of) a caller's data input, such
                # as SGD's first momentum buffer = the gradient when the gradient comes in as data, is copied
                if any(np.shares_memory(value, d) for d in data.values() if isinstance(d, np.ndarray)):
                    value = np.array(value, copy=True)
                state[name] = value
            else:
                result[name] = value
        return result


class NumpyBackend:
    """backend="numpy": the reference interpreter; precision "fp32" (default) or "bf16" matmul operands."""

    name = "numpy"
    stages: tuple[str, ...] = ()

    def __init__(self, precision: str | None = None) -> None:
        self.precision = check_cpu(precision, "numpy")

    def lower(self, graph: Graph, record: Record) -> NumpyCompiled:
        return NumpyCompiled(graph, self.precision)

    def to_device(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def to_host(self, buffer: Any) -> np.ndarray:
        return np.array(buffer, copy=True)


register_backend("numpy", NumpyBackend)
