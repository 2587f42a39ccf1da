"""The kernel plan every backend consumes, and the fusion policy a backend hands the planner.

The planner (passes/fusion.py) is target-neutral: it asks a `FusionPolicy` what the target's
kernels can do and nothing else. A backend lowers each planned `Kernel` to its own code (LLVM
functions, Triton launches); split-K, tiling and buffer layout are the backend's, in its policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlpc.ir import Graph, Op, Value
from mlpc.printer import print_graph, value_names

# Op name -> kernel kind for ops that always run as a kernel of their own (when not a view).
SINGLE_OP_KINDS = {
    "max": "reduce", "full": "fill", "eye": "fill", "dropout_mask": "fill", "concat": "copy", "slice": "copy",
    "linear_solve": "solve", "transpose": "transpose", "softmax": "rowwise", "log_softmax": "rowwise",
    "one_hot": "rowwise", "mse": "mse",
}


@dataclass(frozen=True)
class FusionPolicy:
    """What a target's kernels can absorb; the only thing about a target the planner sees.

    view_ops          ops the target runs as strided views of a buffer (no kernel, no copy)
    colsum_hosts      kernel kinds that can fold a `sum`/`mean` over axis 0 of their tile (bias
                      gradients) into the pass that computes the tile
    fuse_siblings     an elementwise op may join an elementwise chain over the same tile that it
                      does not read from (one launch instead of two on a GPU)
    rank_k_max        a weight gradient X^T dY with batch <= rank_k_max is recomputed inside the
                      optimizer kernel (0: never)
    inline_constants  scalar `full` values read only by elementwise code become immediates
    optimizer_by_key  one optimizer kernel per (update op, attributes, step counter, dtype), as
                      multi-tensor arenas need; else every update in one kernel
    merge_epilogues   an op joining a gemm's epilogue takes along the elementwise chains that only it
                      reads (an activation derivative computed from forward values: 1 - tanh^2,
                      GELU's), so they run in the epilogue instead of a pass over memory of their own
    rewrites          registered passes (passes/gpu.py) the backend runs before planning
    placement         "last": a kernel runs where its last op was (an op joins only if nothing
                      outside reads the kernel's values before it); "first": it runs where its
                      first op was (an op joins only if its operands are ready then), so later
                      users of a kernel's values, such as an activation's derivative, fold into
                      the kernel that computes them. Optimizer kernels always run at their last op.
    """

    name: str
    view_ops: frozenset[str] = frozenset()
    colsum_hosts: frozenset[str] = frozenset({"gemm", "softmax_ce"})
    fuse_siblings: bool = False
    rank_k_max: int = 0
    inline_constants: bool = True
    optimizer_by_key: bool = False
    merge_epilogues: bool = False
    rewrites: tuple[str, ...] = ()
    placement: str = "last"


@dataclass
class Kernel:
    """One fused kernel: its ops (indices into graph.ops, in order), and the values it exchanges."""

    kind: str
    ops: list[int]
    inputs: list[Value] = field(default_factory=list)   # values read from outside the kernel
    outputs: list[Value] = field(default_factory=list)  # values other kernels or the caller need
    colsums: list[Op] = field(default_factory=list)     # sum/mean over axis 0 done in registers
    index: int = 0

    @property
    def name(self) -> str:
        return f"k{self.index}_{self.kind}"


@dataclass
class FusionPlan:
    """The kernels of a graph in execution order, plus the constants inlined into their users."""

    graph: Graph
    kernels: list[Kernel]
    constants: dict[Value, float]  # scalar-valued `full` results read as immediates
    dead: list[int]                # indices of ops whose results nobody needs
    views: list[int] = field(default_factory=list)  # ops the target runs as views (no kernel)
    policy: FusionPolicy | None = None

    def kernel_of(self) -> dict[int, Kernel]:
        return {i: k for k in self.kernels for i in k.ops}

    def kernel_ops(self) -> dict[str, list[int]]:
        """Kernel name -> the graph op indices it runs (what inspection reports)."""
        return {k.name: list(k.ops) for k in self.kernels}

    def annotations(self) -> dict[int, str]:
        notes: dict[int, str] = {}
        for k in self.kernels:
            for i in k.ops:
                role = ""
                op = self.graph.ops[i]
                if k.kind == "gemm":
                    role = " colsum" if op in k.colsums else (" epilogue" if op.name != "matmul" else " main")
                elif k.kind == "softmax_ce" and op in k.colsums:
                    role = " colsum"
                elif k.kind == "optimizer" and op.name == "matmul":
                    role = " rank-k gradient"
                notes[i] = f"{k.name}{role}"
        for i in self.views:
            notes[i] = "view"
        for i in self.dead:
            notes[i] = "dead"
        for i, op in enumerate(self.graph.ops):
            if op.name == "full" and i not in notes:
                notes[i] = "inlined constant"
        return notes

    def dump(self) -> str:
        """The graph with each op's kernel as a trailing comment, then one line per kernel."""
        head = f"// kernels: {len(self.kernels)}"
        if self.policy is not None:
            head += f" (policy {self.policy.name})"
        lines = [print_graph(self.graph, annotate=self.annotations()).rstrip("\n"), head]
        names = value_names(self.graph)
        for k in self.kernels:
            ops = " ".join(self.graph.ops[i].name for i in k.ops)
            ins = ", ".join("%" + names[v] for v in k.inputs)
            outs = ", ".join("%" + names[v] for v in k.outputs)
            lines.append(f"//   {k.name}: [{ops}] ({ins}) -> ({outs})")
        return "\n".join(lines) + "\n"
