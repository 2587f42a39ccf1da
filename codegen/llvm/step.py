"""The step build shared by the JIT llvm backend and the AOT exporter: dtype check, fusion, memory plan,
label checks and the LLVM module of one step."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from codegen.llvm import PROFILE
from mlpc.errors import MlpcError
from mlpc.ir import Graph
from mlpc.types import DType

if TYPE_CHECKING:  # codegen is imported on a compile-cache miss only (check_dtypes runs on every lower)
    from codegen.llvm.module import StepModule
    from codegen.llvm.target import Target
    from passes.memory import MemoryPlan
    from passes.plan import FusionPlan

LABEL_OPS = {"softmax_cross_entropy": 1, "softmax_cross_entropy_grad": 1, "one_hot": 0}  # op -> label operand


@dataclass
class BuiltStep:
    """A step's kernel plan, memory plan, label checks and (unoptimized) LLVM module."""

    plan: FusionPlan
    mem: MemoryPlan
    labels: list[tuple[str, int]]
    step: StepModule


def check_dtypes(graph: Graph, who: str) -> None:
    for v in [i.value for i in graph.inputs] + [o.value for o in graph.outputs]:
        if v.dtype not in (DType.f32, DType.i32, DType.i1):
            raise MlpcError(f"{who} computes in f32 (with i32/i1 indices); got a {v.dtype.value} tensor")


def label_checks(graph: Graph) -> list[tuple[str, int]]:
    """Data inputs used as class labels, with their class counts: the step range-checks them before
    touching any state, and returns 1 (doing nothing) when one is out of range."""
    names = {i.value: i.name for i in graph.inputs if i.role == "data"}
    out = []
    for op in graph.ops:
        pos = LABEL_OPS.get(op.name)
        if pos is None or op.operands[pos] not in names:
            continue
        classes = op.attrs["num_classes"] if op.name == "one_hot" else op.operands[0].shape[1]
        out.append((names[op.operands[pos]], int(classes)))
    return sorted(set(out))


def build_step(graph: Graph, target: Target, who: str, profile: bool = PROFILE) -> BuiltStep:
    """Fuse, plan and generate `graph` (the same code for the JIT backend and the exported library)."""
    from codegen.llvm.module import build_module, scratch_needs
    from codegen.llvm.policy import MEMORY, POLICY
    from passes.fusion import fuse
    from passes.memory import plan_memory

    check_dtypes(graph, who)
    # bf16: every matmul is a gemm kernel (a rank-K weight gradient recomputed in the optimizer would be fp32)
    plan = fuse(graph, replace(POLICY, rank_k_max=0) if target.precision == "bf16" else POLICY)
    mem = plan_memory(plan, scratch_needs(plan, target), MEMORY)
    labels = label_checks(graph)
    step = build_module(plan, mem, target, labels=labels or None, profile=profile)
    return BuiltStep(plan, mem, labels, step)
