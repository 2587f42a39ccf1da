"""Compile time per stage and pass (`mlpc dump --timing`): the trainer's step is compiled again, cold, and timed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mlpc.ir import Graph


@dataclass
class StageTime:
    name: str
    seconds: float
    detail: str = ""


def compile_timings(trainer: Any) -> list[StageTime]:
    """Trace, every pass of the trainer's pipeline, then the backend's lowering (LLVM: fusion, memory plan,
    and codegen + load, bypassing the compile cache), each timed once with `time.perf_counter`."""
    from mlpc.api import trace_model
    from passes.manager import PassManager

    start = time.perf_counter()
    traced = trace_model(trainer.model, trainer.batch_size, trainer.in_features, trainer.loss, "step")
    rows = [StageTime("trace", time.perf_counter() - start, "traced")]
    pm = PassManager(verify_each=False)
    graph = pm.run(traced, trainer._pipeline())
    rows += [StageTime(name, seconds, "pass") for name, seconds in pm.timings]
    rows += _backend_timings(trainer, graph)
    return rows


def _backend_timings(trainer: Any, graph: Graph) -> list[StageTime]:
    name = str(trainer.backend_name)
    if name != "llvm":
        start = time.perf_counter()
        trainer.backend.lower(graph, lambda stage, text: None)
        stages = ", ".join(trainer.backend.stages) or "no stages of its own"
        return [StageTime(f"{name} lower", time.perf_counter() - start, stages)]
    from codegen.llvm.module import scratch_needs
    from codegen.llvm.target import host_target, with_precision
    from passes.fusion import fuse
    from passes.memory import plan_memory
    from runtime.llvm_backend import lower_graph

    target = with_precision(host_target(), getattr(trainer, "precision", "fp32"))
    t0 = time.perf_counter()
    plan = fuse(graph)
    t1 = time.perf_counter()
    plan_memory(plan, scratch_needs(plan, target))
    t2 = time.perf_counter()
    lower_graph(graph, target=target, use_cache=False)  # fuses and plans again, then generates
    t3 = time.perf_counter()
    codegen = max(0.0, (t3 - t2) - (t2 - t0))
    return [StageTime("fusion", t1 - t0, "fused"), StageTime("memory plan", t2 - t1, "planned"),
            StageTime("llvm codegen + load", codegen, "llvm, asm (without the compile cache)")]


def timing_table(rows: list[StageTime], trainer: Any) -> str:
    """The rows as text, with the share of the total and how the trainer's own compile went."""
    total = sum(r.seconds for r in rows) or 1e-12
    lines = [f"{'stage / pass':<56} {'ms':>9} {'%':>6}  what"]
    for r in rows:
        lines.append(f"{r.name[:56]:<56} {r.seconds * 1e3:9.2f} {100 * r.seconds / total:6.1f}  {r.detail}")
    lines.append(f"{'total':<56} {total * 1e3:9.2f} {100.0:6.1f}")
    compiled = trainer._compiled.get(("step", trainer.batch_size))
    seconds = getattr(compiled, "compile_seconds", None)
    if seconds is not None:
        cached = " (from the compile cache)" if getattr(compiled, "from_cache", False) else ""
        lines.append(f"this run's backend lowering took {seconds * 1e3:.2f} ms{cached}")
    return "\n".join(lines)
