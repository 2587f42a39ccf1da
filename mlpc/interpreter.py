"""The NumPy reference interpreter: runs a graph op by op with each op's reference rule."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from mlpc.errors import InputError
from mlpc.ir import Graph, Op, Value
from mlpc.ops import registry


def run_op(op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
    opdef = registry.get(op.name)
    out = opdef.reference(*args, **op.attrs)
    outs = list(out) if isinstance(out, tuple) else [out]
    return [np.asarray(o, dtype=r.type.dtype.numpy).reshape(r.type.shape) for o, r in zip(outs, op.results)]


class Interpreter:
    """torch.fx-style interpreter: override `run_op` to observe or change each op."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def run_op(self, op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
        return run_op(op, args)

    def run(self, inputs: Mapping[str, Any], observe: Callable[[Op, list[np.ndarray]], None] | None = None
            ) -> dict[str, np.ndarray]:
        env: dict[Value, np.ndarray] = {}
        for inp in self.graph.inputs:
            if inp.name not in inputs:
                raise InputError(f"missing input {inp.name!r} for graph @{self.graph.name}")
            arr = np.asarray(inputs[inp.name])
            t = inp.value.type
            if arr.shape != t.shape:
                raise InputError(f"input {inp.name!r} has shape {list(arr.shape)}, graph expects {list(t.shape)}")
            env[inp.value] = arr.astype(t.dtype.numpy, copy=False)
        dead_after = self._dead_after()
        with np.errstate(all="ignore"):
            for i, op in enumerate(self.graph.ops):
                outs = self.run_op(op, [env[v] for v in op.operands])
                for r, o in zip(op.results, outs):
                    env[r] = o
                if observe is not None:
                    observe(op, outs)
                for v in dead_after[i]:  # free intermediates after their last use: peak memory, not total
                    env.pop(v, None)
        return {o.name: env[o.value] for o in self.graph.outputs}

    def _dead_after(self) -> list[list[Value]]:
        """For each op, the op results no later op or output reads (graph inputs are never freed)."""
        last: dict[Value, int] = {}
        for i, op in enumerate(self.graph.ops):
            for v in op.operands:
                last[v] = i
            for r in op.results:
                last.setdefault(r, i)
        keep = {o.value for o in self.graph.outputs} | {i.value for i in self.graph.inputs}
        dead: list[list[Value]] = [[] for _ in self.graph.ops]
        for v, i in last.items():
            if v not in keep:
                dead[i].append(v)
        return dead


def interpret(graph: Graph, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Run `graph` on named NumPy inputs; returns named outputs."""
    return Interpreter(graph).run(inputs)
