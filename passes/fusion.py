"""Fusion: group a graph's ops into kernels (target-neutral; the LLVM and Triton renderers share it).

Kernel kinds:
  gemm         one matmul, its elementwise epilogue chain (bias, activation, activation derivative)
               and column sums of epilogue values (the bias gradient) computed from registers
  elementwise  a chain of same-shaped elementwise/broadcast/reshape ops, one pass over memory
  softmax_ce   softmax_cross_entropy forward and its gradient (and the bias gradient's column sums)
               in one pass over the logits
  optimizer    every parameter's update in one kernel
  reduce, rowwise (softmax, log_softmax, one_hot), transpose, mse, fill (full, eye, dropout_mask), copy (concat,
               slice), solve (linear_solve): single ops

A group is placed at its last op; an op joins a group only if no outside op earlier than it reads
the group's values, so ordering kernels by position is a topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Op, Value
from mlpc.ops import registry
from mlpc.printer import print_graph

ELEMENTWISE_LIKE = ("elementwise",)
SHAPE_AS_ELEMENTWISE = ("broadcast_to", "reshape")
ROWWISE = ("softmax", "log_softmax", "one_hot")


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

    def kernel_of(self) -> dict[int, Kernel]:
        return {i: k for k in self.kernels for i in k.ops}

    def annotations(self) -> dict[int, str]:
        notes: dict[int, str] = {}
        for k in self.kernels:
            for i in k.ops:
                role = ""
                op = self.graph.ops[i]
                if k.kind == "gemm":
                    role = " colsum" if op in k.colsums else (" epilogue" if op.name != "matmul" else " main")
                elif k.kind == "optimizer" and op.name == "matmul":
                    role = " rank-k gradient"
                notes[i] = f"{k.name}{role}"
        for i in self.dead:
            notes[i] = "dead"
        for i, op in enumerate(self.graph.ops):
            if op.name == "full" and i not in notes:
                notes[i] = "inlined constant"
        return notes

    def dump(self) -> str:
        """The graph with each op's kernel as a trailing comment, then one line per kernel."""
        lines = [print_graph(self.graph, annotate=self.annotations()).rstrip("\n"), "// kernels:"]
        names = _names(self.graph)
        for k in self.kernels:
            ops = " ".join(self.graph.ops[i].name for i in k.ops)
            ins = ", ".join("%" + names[v] for v in k.inputs)
            outs = ", ".join("%" + names[v] for v in k.outputs)
            lines.append(f"//   {k.name}: [{ops}] ({ins}) -> ({outs})")
        return "\n".join(lines) + "\n"


def _names(g: Graph) -> dict[Value, str]:
    from mlpc.printer import value_names

    return value_names(g)


def _kind(op: Op) -> str:
    return registry.get(op.name).kind


def live_ops(graph: Graph) -> list[bool]:
    """Which ops contribute to an output (dead-code elimination without changing the graph)."""
    needed = {o.value for o in graph.outputs}
    live = [False] * len(graph.ops)
    for i in range(len(graph.ops) - 1, -1, -1):
        op = graph.ops[i]
        if any(r in needed for r in op.results):
            live[i] = True
            needed.update(op.operands)
    return live


def _is_ew(op: Op) -> bool:
    return _kind(op) in ELEMENTWISE_LIKE or op.name in SHAPE_AS_ELEMENTWISE


def _colsum_axis0(op: Op, v: Value) -> bool:
    """`sum`/`mean` of a 2-D value over axis 0 (the bias gradient)."""
    if op.name not in ("sum", "mean") or op.operands[0] is not v or len(v.shape) != 2:
        return False
    from mlpc.ops.structural import normalize_axes

    return normalize_axes(op.attrs["axes"], 2) == (0,)


def fuse(graph: Graph) -> FusionPlan:
    """Group the live ops of `graph` into kernels; see the module docstring for the kinds."""
    ops = graph.ops
    index = {id(op): i for i, op in enumerate(ops)}
    live = live_ops(graph)
    users: dict[Value, list[int]] = {}
    for i, op in enumerate(ops):
        if live[i]:
            for v in op.operands:
                users.setdefault(v, []).append(i)
    graph_out = {o.value for o in graph.outputs}

    # constants: scalar-valued `full` ops only read by elementwise code become immediates
    constants: dict[Value, float] = {}
    for i, op in enumerate(ops):
        if live[i] and op.name == "full" and op.result not in graph_out:
            if all(_is_ew(ops[u]) or _kind(ops[u]) in ("optimizer",) or ops[u].name == "softmax_cross_entropy_grad"
                   for u in users.get(op.result, [])):
                constants[op.result] = float(op.attrs["value"])

    group_of: dict[int, Kernel] = {}
    kernels: list[Kernel] = []

    def values_of(k: Kernel) -> list[Value]:
        return [r for i in k.ops for r in ops[i].results]

    def can_extend(k: Kernel, j: int) -> bool:
        """Op j may join k if no op outside k at or before j reads k's values."""
        for v in values_of(k):
            for u in users.get(v, []):
                if u <= j and u not in k.ops and u != j:
                    return False
        return True

    def new(kind: str, i: int) -> Kernel:
        k = Kernel(kind, [i])
        kernels.append(k)
        group_of[i] = k
        return k

    def join(k: Kernel, i: int) -> None:
        k.ops.append(i)
        group_of[i] = k

    sce_by_key: dict[tuple[int, int], Kernel] = {}
    optimizer: Kernel | None = None
    for i, op in enumerate(ops):
        if not live[i]:
            continue
        if op.name == "full" and op.result in constants:
            continue
        kind = _kind(op)
        if op.name == "matmul":
            new("gemm", i)
            continue
        if kind == "optimizer":
            if optimizer is not None and can_extend(optimizer, i):
                join(optimizer, i)
            else:
                optimizer = new("optimizer", i)
            _absorb_rank_k_gradient(optimizer, op, i, ops, index, group_of, kernels, users)
            continue
        if op.name in ("softmax_cross_entropy", "softmax_cross_entropy_grad"):
            key = (id(op.operands[0]), id(op.operands[1]))
            k = sce_by_key.get(key)
            if k is not None and can_extend(k, i) and all(ops[j].name != op.name for j in k.ops):
                join(k, i)
            else:
                sce_by_key[key] = new("softmax_ce", i)
            continue
        if op.name in ("sum", "mean"):
            src = op.operands[0]
            p = src.producer
            k = group_of.get(index[id(p)]) if p is not None and id(p) in index else None
            if k is not None and k.kind in ("gemm", "softmax_ce") and _colsum_axis0(op, src) \
                    and can_extend(k, i) and _reads_full_tile(k, src, ops):
                join(k, i)
                k.colsums.append(op)
                continue
            new("reduce", i)
            continue
        if _is_ew(op):
            target = _elementwise_target(op, i, ops, index, group_of, constants, can_extend)
            if target is not None:
                join(target, i)
            else:
                new("elementwise", i)
            continue
        if op.name == "max":
            new("reduce", i)
        elif op.name in ("full", "eye", "dropout_mask"):
            new("fill", i)
        elif op.name in ("concat", "slice"):
            new("copy", i)
        elif op.name == "linear_solve":
            new("solve", i)
        elif op.name == "transpose":
            new("transpose", i)
        elif op.name in ROWWISE:
            new("rowwise", i)
        elif op.name == "mse":
            new("mse", i)
        else:
            raise MlpcError(f"fusion: no kernel kind for op {op.name}")

    # order: fills first (no inputs), then by each kernel's last op
    kernels.sort(key=lambda k: (k.kind != "fill", max(k.ops)))
    for n, k in enumerate(kernels):
        k.index = n
        inside = set(values_of(k))
        seen: set[Value] = set()
        for i in k.ops:
            for v in ops[i].operands:
                if v not in inside and v not in constants and v not in seen:
                    seen.add(v)
                    k.inputs.append(v)
        for v in values_of(k):
            outside = [u for u in users.get(v, []) if u not in k.ops]
            if outside or v in graph_out:
                k.outputs.append(v)
    dead = [i for i, op in enumerate(ops) if not live[i]]
    return FusionPlan(graph, kernels, constants, dead)


RANK_K_MAX = 4


def rank_k_gradient(op: Op) -> bool:
    """A weight gradient X^T dY with a tiny inner dimension (batch <= RANK_K_MAX): recomputing each
    element (K FMAs) inside the optimizer is cheaper than writing dW and reading it back."""
    if op.name != "matmul" or not op.attrs["transpose_a"] or op.attrs["transpose_b"]:
        return False
    return op.operands[0].shape[0] <= RANK_K_MAX


def _absorb_rank_k_gradient(opt: Kernel, op: Op, i: int, ops: list[Op], index: dict[int, int],
                            group_of: dict[int, Kernel], kernels: list[Kernel],
                            users: dict[Value, list[int]]) -> None:
    """Move a rank-K weight-gradient matmul feeding update op `i` into the optimizer kernel."""
    g = op.operands[1]
    p = g.producer
    if p is None or id(p) not in index or not rank_k_gradient(p):
        return
    j = index[id(p)]
    k = group_of.get(j)
    if k is None or k.kind != "gemm" or k.ops != [j] or users.get(g) != [i]:
        return
    kernels.remove(k)
    opt.ops.append(j)
    opt.ops.sort()
    group_of[j] = opt


def _reads_full_tile(k: Kernel, v: Value, ops: list[Op]) -> bool:
    """A column sum can ride on a gemm/softmax_ce kernel only for its [M, N] results."""
    if k.kind == "gemm":
        return v.shape == ops[k.ops[0]].result.shape
    return any(ops[i].name == "softmax_cross_entropy_grad" and ops[i].result is v for i in k.ops)


def _elementwise_target(op: Op, i: int, ops: list[Op], index: dict[int, int], group_of: dict[int, Kernel],
                        constants: dict[Value, float], can_extend) -> Kernel | None:
    """The gemm or elementwise kernel this op can join as an epilogue, or None."""
    shape = op.results[0].shape
    if op.name == "reshape":
        return None  # reads by flat index: starts its own group
    best: Kernel | None = None
    for v in op.operands:
        p = v.producer
        if p is None or v in constants or id(p) not in index:
            continue
        k = group_of.get(index[id(p)])
        if k is None or k.kind not in ("gemm", "elementwise") or v.shape != shape:
            continue
        if k.kind == "gemm":
            mm = ops[k.ops[0]].result
            if shape != mm.shape or any(ops[j] in k.colsums for j in k.ops) or op.results[0].dtype != mm.dtype:
                continue
            if not all(_epilogue_operand(w, shape) for w in op.operands):
                continue
        else:
            kshape = ops[k.ops[0]].results[0].shape
            if kshape != shape:
                continue
        # every other operand produced in k or before k's first op (never by a later kernel)
        first = min(k.ops)
        ok = True
        for w in op.operands:
            wp = w.producer
            if wp is None or w in constants or id(wp) not in index:
                continue
            j = index[id(wp)]
            if group_of.get(j) is k:
                if w.shape != shape:
                    ok = False
                continue
            if j >= first:
                ok = False
        if ok and can_extend(k, i) and (best is None or max(k.ops) > max(best.ops)):
            best = k
    return best


def _epilogue_operand(w: Value, shape: tuple[int, ...]) -> bool:
    """Operand shapes a gemm epilogue reads: the tile itself, a row [N] / [1,N], a column [M,1], a scalar."""
    m, n = shape
    return w.shape in ((m, n), (n,), (1, n), (m, 1), (), (1,), (1, 1))
