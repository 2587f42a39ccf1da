"""Measured kernel times: a backend's own per-kernel profile when it has one, else the NumPy interpreter per op."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from mlpc.cost import Cost
from mlpc.interpreter import Interpreter
from mlpc.ir import Graph, Op

from .kernels import KernelPlan

NUMPY_VIEWS = frozenset({"reshape", "transpose", "broadcast_to"})  # ops the interpreter runs as views


def sample_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible inputs for every graph input: N(0, 0.1) floats, labels in range, state zeros, t = 0."""
    rng = np.random.default_rng(seed)
    classes = _num_classes(graph)
    out: dict[str, np.ndarray] = {}
    for inp in graph.inputs:
        t = inp.value.type
        if t.dtype.is_int:
            hi = classes if inp.role == "data" and classes else 1
            out[inp.name] = rng.integers(0, max(hi, 1), size=t.shape).astype(t.dtype.numpy)
        elif inp.role == "state":
            out[inp.name] = np.zeros(t.shape, t.dtype.numpy)
        else:
            out[inp.name] = (0.1 * rng.standard_normal(t.shape)).astype(t.dtype.numpy)
    return out


def _num_classes(graph: Graph) -> int:
    for op in graph.ops:
        if op.name in ("softmax_cross_entropy", "softmax_cross_entropy_grad"):
            return int(op.operands[0].shape[-1])
    return 0


class TimingInterpreter(Interpreter):
    """Runs a graph with the NumPy references, recording each op's wall time."""

    def __init__(self, graph: Graph) -> None:
        super().__init__(graph)
        self.samples: dict[int, list[float]] = {}
        self._index = {id(op): i for i, op in enumerate(graph.ops)}

    def run_op(self, op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
        start = time.perf_counter()
        out = super().run_op(op, args)
        self.samples.setdefault(self._index[id(op)], []).append(time.perf_counter() - start)
        return out


def interpreter_op_times(graph: Graph, repeats: int = 5, seed: int = 0) -> dict[int, float]:
    """Median seconds per op index over `repeats` runs (after one warm-up run)."""
    inputs = sample_inputs(graph, seed)
    interp = TimingInterpreter(graph)
    interp.run(inputs)
    interp.samples.clear()
    for _ in range(max(repeats, 1)):
        interp.run(inputs)
    return {i: statistics.median(s) for i, s in interp.samples.items()}


def backend_kernel_times(compiled: Any, graph: Graph, repeats: int, to_device: Any) -> dict[str, float] | None:
    """Per-kernel medians from a compiled step that offers `profile(state, data, repeats)`, else None.

    The optional hook returns {kernel name: median seconds}; it runs on a copy of the state.
    """
    profile = getattr(compiled, "profile", None)
    if not callable(profile):
        return None
    inputs = sample_inputs(graph)
    state = {i.name: to_device(inputs[i.name]) for i in graph.inputs if i.role != "data"}
    data = {i.name: inputs[i.name] for i in graph.inputs if i.role == "data"}
    times = profile(state, data, repeats)
    return {str(k): float(v) for k, v in dict(times).items()}


def attach_times(kp: KernelPlan, repeats: int = 5, compiled: Any = None, to_device: Any = None,
                 backend_name: str = "") -> str:
    """Fill each kernel's `seconds`; returns a sentence saying where the times came from."""
    if compiled is not None:
        times = backend_kernel_times(compiled, kp.graph, repeats, to_device or np.array)
        if times:
            for k in kp.kernels:
                k.seconds = times.get(k.name)
            return f"measured per kernel by the {backend_name} backend's profiler (median of {repeats})"
    per_op = interpreter_op_times(kp.graph, repeats)
    views = 0
    for k in kp.kernels:
        k.seconds = sum(per_op.get(i, 0.0) for i in k.ops)
        if k.op_names and all(name in NUMPY_VIEWS for name in k.op_names):
            k.cost = Cost(k.cost.flops, 0)  # the interpreter returns a view: these bytes never move
            views += 1
    what = "summed over each kernel's ops" if kp.fused else "per op"
    note = ""
    if compiled is not None and backend_name not in ("", "numpy"):
        note = f"; the {backend_name} backend offers no per-kernel profile(), so these are not its kernels' times"
    if views:
        note += f"; {views} kernel(s) of only {'/'.join(sorted(NUMPY_VIEWS))} are NumPy views that move no bytes"
    return f"NumPy interpreter, {what} (median of {repeats} runs){note}"


STEP_WARMUP = 3   # untimed steps first: page faults, the worker pool's start, caches
STEP_REPEATS = 21  # at least this many timed steps (the median and its spread are reported)


def step_samples(compiled: Any, graph: Graph, to_device: Any, repeats: int = 5) -> list[float]:
    """Seconds of max(repeats, STEP_REPEATS) whole compiled steps after STEP_WARMUP untimed ones, on sample
    inputs and one private copy of the state (the trainer's own state is not touched)."""
    inputs = sample_inputs(graph)
    data = {i.name: inputs[i.name] for i in graph.inputs if i.role == "data"}
    state = {i.name: to_device(inputs[i.name]) for i in graph.inputs if i.role != "data"}
    samples = []
    for r in range(STEP_WARMUP + max(repeats, STEP_REPEATS)):
        start = time.perf_counter()
        out = compiled.run(state, data)
        for v in out.values():
            np.asarray(v)
        if r >= STEP_WARMUP:
            samples.append(time.perf_counter() - start)
    return samples


def step_time(compiled: Any, graph: Graph, to_device: Any, repeats: int = 5) -> float:
    """Median seconds of one whole compiled step (see step_samples)."""
    return statistics.median(step_samples(compiled, graph, to_device, repeats))

