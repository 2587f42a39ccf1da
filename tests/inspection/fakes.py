"""Stand-ins with the shape of the fusion pass, memory planner and an LLVM-like backend, so inspection's
"light up when they land" paths are tested without depending on unmerged code."""

from __future__ import annotations

import types
from dataclasses import dataclass, field

from mlpc.ir import Graph
from mlpc.printer import print_graph
from runtime.numpy_backend import NumpyBackend, NumpyCompiled


@dataclass
class FakeKernel:
    kind: str
    ops: list[int]
    index: int = 0

    @property
    def name(self) -> str:
        return f"k{self.index}_{self.kind}"


@dataclass
class FakePlan:
    graph: Graph
    kernels: list[FakeKernel] = field(default_factory=list)

    def dump(self) -> str:
        notes = {i: k.name for k in self.kernels for i in k.ops}
        return print_graph(self.graph, annotate=notes) + "// kernels: " + " ".join(k.name for k in self.kernels) + "\n"


def fuse(graph: Graph) -> FakePlan:
    """Runs of ops starting at each matmul (or update op) form one kernel: always a valid grouping."""
    plan = FakePlan(graph)
    for i, op in enumerate(graph.ops):
        if not plan.kernels or op.name in ("matmul", "adam_update", "sgd_update"):
            kind = "gemm" if op.name == "matmul" else ("optimizer" if op.name.endswith("_update") else "elementwise")
            if plan.kernels and kind == "optimizer" and plan.kernels[-1].kind == "optimizer":
                plan.kernels[-1].ops.append(i)
                continue
            plan.kernels.append(FakeKernel(kind, [i], len(plan.kernels)))
        else:
            plan.kernels[-1].ops.append(i)
    return plan


@dataclass(frozen=True)
class Slot:
    offset: int
    nbytes: int
    external: str | None = None


@dataclass
class FakeMemoryPlan:
    arena_bytes: int
    slots: dict
    intervals: dict

    def dump(self, plan: FakePlan) -> str:
        return f"// arena: {self.arena_bytes} bytes\n"


def plan_memory(plan: FakePlan) -> FakeMemoryPlan:
    """No reuse at all: every kernel output gets its own bytes (simple and obviously valid)."""
    slots, intervals, off = {}, {}, 0
    for k in plan.kernels:
        for i in k.ops:
            for r in plan.graph.ops[i].results:
                slots[r] = Slot(off, r.type.nbytes)
                intervals[r] = (k.index, len(plan.kernels))
                off += (r.type.nbytes + 63) // 64 * 64
    return FakeMemoryPlan(off, slots, intervals)


def fusion_module() -> types.ModuleType:
    m = types.ModuleType("passes.fusion")
    m.fuse = fuse  # type: ignore[attr-defined]
    return m


def memory_module() -> types.ModuleType:
    m = types.ModuleType("passes.memory")
    m.plan_memory = plan_memory  # type: ignore[attr-defined]
    return m


class ProfiledCompiled(NumpyCompiled):
    """A compiled step that also offers the optional per-kernel `profile` hook."""

    def profile(self, state, data, repeats):
        self.run(state, data)
        return {k.name: 1e-6 * (n + 1) for n, k in enumerate(fuse(self.graph).kernels)}


class FakeLlvmBackend(NumpyBackend):
    """Runs with NumPy but records the stages an LLVM backend records, with one `define` per kernel."""

    name = "fake-llvm"
    stages = ("fused", "planned", "llvm", "asm")

    def lower(self, graph, record):
        plan = fuse(graph)
        record("fused", plan.dump())
        record("planned", plan_memory(plan).dump(plan))
        llvm = "\n".join(f"define void @{k.name}(ptr %args) {{\nentry:\n  ; {len(k.ops)} ops\n  ret void\n}}\n"
                         for k in plan.kernels)
        record("llvm", "; ModuleID = 'step'\n" + llvm)
        record("asm", "\n".join(f"{k.name}:\n\tretq\n.Lfunc_end{k.index}:" for k in plan.kernels))
        return ProfiledCompiled(graph)


class OwnKernelsCompiled(NumpyCompiled):
    """A compiled step that reports its own kernels (`kernel_ops`), like a backend with its own planner."""

    def kernel_ops(self):
        n = len(self.graph.ops)
        return {f"t{j}_pair": [i for i in (2 * j, 2 * j + 1) if i < n] for j in range((n + 1) // 2)}


class FakeTritonBackend(NumpyBackend):
    """Records Triton-like stages: Python source with one `def` per kernel and per-kernel TTIR sections."""

    name = "fake-triton"
    stages = ("kernels", "triton", "ttir", "ptx")

    def lower(self, graph, record):
        compiled = OwnKernelsCompiled(graph)
        names = list(compiled.kernel_ops())
        record("kernels", "\n".join(names))
        record("triton", "import triton\n\n" + "\n\n".join(
            f"@triton.jit\ndef {k}(x_ptr, n):\n    pid = tl.program_id(0)\n" for k in names))
        record("ttir", "\n".join(f"// ----- {k} -----\nmodule {{\n  tt.func @{k}() {{ tt.return }}\n}}" for k in names))
        record("ptx", "\n".join(f"// ----- {k} (sm_90) -----\n.visible .entry {k}()\n{{\n  ret;\n}}" for k in names))
        return compiled
