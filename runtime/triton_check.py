"""Runs a graph on the Triton backend and compares every output with the NumPy interpreter."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from mlpc.interpreter import interpret
from mlpc.ir import Graph


def select_device() -> str:
    """'cuda' when a GPU is present, else switch Triton to its interpreter; this must happen
    before `import triton`, which binds tl.cdiv & co. to compiled or interpreted versions."""
    import torch

    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        if torch.cuda.is_available():
            return "cuda"
        if "triton" in sys.modules:
            raise RuntimeError("triton was imported before the interpreter could be chosen: "
                               "set TRITON_INTERPRET=1 (no GPU here)")
        os.environ["TRITON_INTERPRET"] = "1"
    return "cpu"


def run_triton(graph: Graph, inputs: dict[str, np.ndarray], precision: str = "ieee", steps: int = 1,
               sm_count: int | None = None, cuda_graph: bool = True) -> tuple[dict[str, np.ndarray], Any]:
    """Lower `graph` with the triton backend and run it `steps` times; returns outputs (with new
    state) as NumPy and the compiled object."""
    from runtime.triton_backend import TritonBackend

    backend = TritonBackend(precision, cuda_graph=cuda_graph)
    stages: dict[str, Any] = {}
    compiled = backend.lower(graph, stages.__setitem__, sm_count=sm_count)
    state = {i.name: backend.to_device(inputs[i.name]) for i in graph.inputs if i.role != "data"}
    data = {i.name: inputs[i.name] for i in graph.inputs if i.role == "data"}
    out: dict[str, Any] = {}
    for _ in range(steps):
        out = compiled.run(state, data)
    result = {name: np.asarray(v) for name, v in out.items()}
    for name, buf in state.items():
        result[name] = backend.to_host(buf)
    compiled.stages = stages
    return result, compiled


def run_reference(graph: Graph, inputs: dict[str, np.ndarray], steps: int = 1) -> dict[str, np.ndarray]:
    """The NumPy interpreter, feeding state outputs back as inputs between steps."""
    env = dict(inputs)
    out: dict[str, np.ndarray] = {}
    for _ in range(steps):
        out = interpret(graph, env)
        for o in graph.outputs:
            if any(i.name == o.name for i in graph.inputs):
                env[o.name] = out[o.name]
    return {**{k: v for k, v in env.items() if k not in out}, **out}


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max(|want|, tiny): one number per tensor, NaN counts as failure."""
    got = np.asarray(got, np.float64).reshape(np.shape(want))
    want = np.asarray(want, np.float64)
    if got.size == 0:
        return 0.0
    if not np.all(np.isfinite(got)):
        return float("inf")
    scale = max(float(np.abs(want).max()), 1e-30)
    return float(np.abs(got - want).max() / scale)


def compare(graph: Graph, inputs: dict[str, np.ndarray], precision: str = "ieee", steps: int = 1,
            **kw: Any) -> dict[str, float]:
    """Relative error of every output and updated state after `steps` steps."""
    got, _ = run_triton(graph, inputs, precision, steps, **kw)
    want = run_reference(graph, inputs, steps)
    return {name: max_rel_error(got[name], want[name]) for name in want if name in got}
