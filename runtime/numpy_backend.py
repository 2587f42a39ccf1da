"""The reference backend: runs graphs with the NumPy interpreter."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc.interpreter import Interpreter
from mlpc.ir import Graph
from runtime.backend import Record, register_backend


class NumpyCompiled:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.interpreter = Interpreter(graph)
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
    name = "numpy"
    stages: tuple[str, ...] = ()

    def lower(self, graph: Graph, record: Record) -> NumpyCompiled:
        return NumpyCompiled(graph)

    def to_device(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def to_host(self, buffer: Any) -> np.ndarray:
        return np.array(buffer, copy=True)


register_backend("numpy", NumpyBackend)
