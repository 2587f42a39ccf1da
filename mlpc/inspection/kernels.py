"""Kernel grouping for inspection: the fusion pass's kernels when it exists, else one op per kernel."""

from __future__ import annotations

import inspect as pyinspect
import re
from dataclasses import dataclass, field
from typing import Any

from mlpc.cost import Cost, group_cost, op_cost
from mlpc.ir import Graph
from mlpc.printer import print_graph


@dataclass
class KernelInfo:
    """One kernel of a graph: the op indices it runs, its cost, and (later) its measured time."""

    name: str
    kind: str
    ops: list[int]
    cost: Cost
    source: str = ""
    source_kind: str = ""          # "llvm", "triton", ..., or "ir+numpy" for the per-op fallback
    seconds: float | None = None   # median measured time of one execution
    op_names: list[str] = field(default_factory=list)

    @property
    def achieved_flops(self) -> float | None:
        if self.seconds is None or self.seconds <= 0:
            return None
        return self.cost.flops / self.seconds


@dataclass
class KernelPlan:
    """The kernels of one graph, how they were found, and the fusion plan object if any."""

    graph: Graph
    kernels: list[KernelInfo]
    grouping: str                  # human-readable: where the grouping came from
    fused: bool                    # True when a fusion pass grouped the ops
    fusion_plan: Any = None        # passes.fusion.FusionPlan when available

    def kernel_of_op(self) -> dict[int, KernelInfo]:
        return {i: k for k in self.kernels for i in k.ops}


def _fusion_plan(graph: Graph) -> tuple[Any, str]:
    """(plan, "") from passes.fusion.fuse, or (None, reason) when there is no usable fusion pass."""
    try:
        from passes.fusion import fuse  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None, "no fusion pass installed"
    try:
        return fuse(graph), ""
    except Exception as e:  # a fusion bug must not take inspection down with it
        return None, f"fusion pass failed: {type(e).__name__}: {e}"


def plan_kernels(graph: Graph, use_fusion: bool = True) -> KernelPlan:
    """Group `graph`'s ops into kernels with their FLOPs and bytes."""
    plan, reason = _fusion_plan(graph) if use_fusion else (None, "fusion disabled")
    needed = _needed_outside(graph)
    if plan is not None:
        kernels = []
        for k in plan.kernels:
            ops = [graph.ops[i] for i in k.ops]
            outside = {id(v) for v in needed_by_others(graph, k.ops)} | needed
            kernels.append(KernelInfo(str(k.name), str(k.kind), list(k.ops), group_cost(ops, outside),
                                      op_names=[op.name for op in ops]))
        return KernelPlan(graph, kernels, "fused kernels from passes.fusion", True, plan)
    kernels = []
    for i, op in enumerate(graph.ops):
        if op.name == "full" and op.result.type.size == 1:
            continue  # scalar constants are immediates, not kernels
        kernels.append(KernelInfo(f"k{len(kernels)}_{op.name}", op.name, [i], op_cost(op), op_names=[op.name]))
    return KernelPlan(graph, kernels, f"one kernel per op: {reason}", False)


def plan_from_backend(graph: Graph, kernel_ops: dict[str, list[int]], backend_name: str) -> KernelPlan:
    """Kernels as a backend reports them (`Compiled.kernel_ops()`: kernel name -> op indices of the
    lowered graph), for backends with their own kernel planner."""
    needed = _needed_outside(graph)
    kernels = []
    for name, idx in kernel_ops.items():
        ops = [graph.ops[i] for i in idx]
        outside = {id(v) for v in needed_by_others(graph, list(idx))} | needed
        kind = name.split("_", 1)[1] if "_" in name else name
        kernels.append(KernelInfo(str(name), kind, list(idx), group_cost(ops, outside), op_names=[o.name for o in ops]))
    return KernelPlan(graph, kernels, f"the {backend_name} backend's own kernels", True)


def _needed_outside(graph: Graph) -> set[int]:
    return {id(o.value) for o in graph.outputs}


def needed_by_others(graph: Graph, ops: list[int]) -> list[Any]:
    """Values produced by `ops` that an op outside `ops` reads."""
    inside = set(ops)
    produced = {id(r): r for i in ops for r in graph.ops[i].results}
    out = []
    for j, op in enumerate(graph.ops):
        if j in inside:
            continue
        for v in op.operands:
            if id(v) in produced:
                out.append(produced[id(v)])
    return out


_BLOCK = re.compile(r"^// ----- (\S+)(?: [^-]*)? -----$")
_LLVM_DEFINE = re.compile(r"^define\b.*@\"?([A-Za-z0-9_.$]+)\"?\(")


def extract_function(text: str, name: str) -> str:
    """The definition of function `name` in LLVM IR, PTX, assembly or Python (Triton) text, or ""."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        b = _BLOCK.match(line)
        if b and b.group(1) == name:  # `// ----- name -----` sections (per-kernel TTIR / PTX dumps)
            end = next((j for j in range(i + 1, len(lines)) if _BLOCK.match(lines[j])), len(lines))
            return "\n".join(lines[i:end]).rstrip()
        m = _LLVM_DEFINE.match(line)
        if m and m.group(1) == name:
            for j in range(i, len(lines)):
                if lines[j].startswith("}"):
                    return "\n".join(lines[i:j + 1])
        stripped = line.lstrip()
        if stripped.startswith(f"def {name}(") or stripped.startswith(f".entry {name}(") \
                or stripped.startswith(f".visible .entry {name}("):
            indent = len(line) - len(stripped)
            end = len(lines)
            for j in range(i + 1, len(lines)):
                s = lines[j]
                if s.strip() and len(s) - len(s.lstrip()) <= indent and not s.lstrip().startswith(("@", ")")):
                    end = j if not s.lstrip().startswith("}") else j + 1
                    break
            start = i
            while start > 0 and lines[start - 1].lstrip().startswith("@"):
                start -= 1  # keep decorators (@triton.jit)
            return "\n".join(lines[start:end]).rstrip()
        if line.startswith(f"{name}:") and not line.startswith(f"{name}::"):  # assembly label
            end = next((j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith(".Lfunc_end")),
                       min(len(lines), i + 400))
            return "\n".join(lines[i:end])
    return ""


def attach_sources(kp: KernelPlan, stage_texts: dict[str, str], stage_order: list[str]) -> None:
    """Give every kernel its generated code from the latest backend stage that defines it, else
    its IR lines and the NumPy reference of each op (what the NumPy backend runs)."""
    code_stages = [s for s in stage_order if s in stage_texts and s not in
                   ("traced", "autodiff", "optimizer", "simplified", "fused", "planned", "predict")]
    for k in kp.kernels:
        for stage in code_stages:
            src = extract_function(stage_texts[stage], k.name)
            if src:
                k.source, k.source_kind = src, stage
                break
        if not k.source:
            k.source, k.source_kind = ir_and_reference(kp.graph, k.ops), "ir+numpy"


def ir_and_reference(graph: Graph, ops: list[int]) -> str:
    """The kernel's ops as IR, followed by the NumPy reference function of each distinct op."""
    from mlpc.ops import registry

    wanted = set(ops)
    text = print_graph(graph, show_loc=False).splitlines()
    first = len(text) - 2 - len(graph.ops)  # op lines sit between the (maybe wrapped) header and `return`
    body = [text[first + i] for i in range(len(graph.ops)) if i in wanted]
    parts = ["// IR", *body]
    done: set[str] = set()
    for i in ops:
        name = graph.ops[i].name
        if name in done:
            continue
        done.add(name)
        try:
            src = pyinspect.getsource(registry.get(name).reference)
        except (OSError, TypeError):
            src = f"{registry.get(name).reference!r}"
        parts += ["", f"# NumPy reference of {name}", src.rstrip()]
    return "\n".join(parts)
