"""The one kernel planner: groups a graph's ops into kernels for any backend, asking its FusionPolicy.

Both the LLVM and the Triton backends lower the plan this pass produces (passes/plan.py holds the
data and the policy). Kernel kinds, in the spirit of TVM's FuseOps pattern kinds:
  gemm         one matmul, its elementwise epilogue chain (bias, activation, activation derivative)
               and column sums of epilogue values (the bias gradient) computed from registers
  elementwise  a chain of same-shaped elementwise ops (and, where they are not views, broadcasts
               and reshapes), one pass over memory
  softmax_ce   softmax_cross_entropy forward and its gradient (and, where the policy allows, the bias
               gradient's column sums) in one pass over the logits
  optimizer    parameter updates in one multi-tensor kernel (and rank-K weight gradients on CPU)
  reduce, rowwise (softmax, log_softmax, one_hot), transpose, mse, fill (full, eye, dropout_mask),
               copy (concat, slice), solve (linear_solve): single ops
Ops in `policy.view_ops` get no kernel: they are strided views of their operand's buffer, and a
kernel that reads one depends on the kernel that produced the viewed value.

A group is placed at its last op (an op joins it only if no outside op earlier than it reads the
group's values) or, if the policy says so, at its first op (an op joins it only if its operands are
ready there); either way ordering kernels by position is a topological order.
"""

from __future__ import annotations

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Op, Value
from mlpc.ops import registry
from passes.plan import SINGLE_OP_KINDS, FusionPlan, FusionPolicy, Kernel

SHAPE_AS_ELEMENTWISE = ("broadcast_to", "reshape")
SCE = ("softmax_cross_entropy", "softmax_cross_entropy_grad")

# The LLVM CPU backend's policy is the default: every reshape/broadcast is a loop, not a view.
CPU_POLICY = FusionPolicy("cpu", rank_k_max=4, merge_epilogues=True)
RANK_K_MAX = CPU_POLICY.rank_k_max


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


def colsum_axis0(op: Op, v: Value) -> bool:
    """`sum`/`mean` of a 2-D value over axis 0 (the bias gradient), axes in any spelling."""
    if op.name not in ("sum", "mean") or op.operands[0] is not v or len(v.shape) != 2:
        return False
    from mlpc.ops.structural import normalize_axes

    return normalize_axes(op.attrs["axes"], 2) == (0,)


def rank_k_gradient(op: Op, rank_k_max: int = RANK_K_MAX) -> bool:
    """A weight gradient X^T dY with a tiny inner dimension (batch <= rank_k_max): recomputing each
    element (K FMAs) inside the optimizer is cheaper than writing dW and reading it back."""
    if op.name != "matmul" or not op.attrs["transpose_a"] or op.attrs["transpose_b"]:
        return False
    return op.operands[0].shape[0] <= rank_k_max


def optimizer_key(op: Op) -> tuple:
    """Update ops that can share one multi-tensor kernel: same rule, attributes, step counter and
    hyperparameter operands, and dtype."""
    from mlpc.ops.optim import n_state

    scalars = op.operands[2 + n_state(op.name, op.attrs):]
    return (op.name, tuple(sorted(op.attrs.items())), tuple(id(v) for v in scalars), op.operands[0].dtype)


class _Planner:
    """One run of the planner over a graph (state shared by the grouping rules)."""

    def __init__(self, graph: Graph, policy: FusionPolicy) -> None:
        self.g, self.policy = graph, policy
        self.ops = ops = graph.ops
        self.live = live_ops(graph)
        self.index: dict[Value, int] = {r: i for i, op in enumerate(ops) for r in op.results}
        self.views = [i for i, op in enumerate(ops) if self.live[i] and op.name in policy.view_ops]
        self.view_set = set(self.views)
        self.users: dict[Value, list[int]] = {}
        for i, op in enumerate(ops):
            if self.live[i] and i not in self.view_set:
                for v in dict.fromkeys(self.root(w) for w in op.operands):
                    if v is not None:
                        self.users.setdefault(v, []).append(i)
        self.graph_out = {r for o in graph.outputs if (r := self.root(o.value)) is not None}
        self.constants = self._constants()
        self.group_of: dict[int, Kernel] = {}
        self.kernels: list[Kernel] = []

    def root(self, v: Value) -> Value | None:
        """The buffer value behind a view (None for a constant view), else v itself."""
        while True:
            i = self.index.get(v)
            if i is None or i not in self.view_set:
                return v
            op = self.ops[i]
            if not op.operands:
                return None
            v = op.operands[0]

    def _constants(self) -> dict[Value, float]:
        """Scalar-valued `full` ops only read by elementwise code become immediates."""
        out: dict[Value, float] = {}
        if not self.policy.inline_constants:
            return out
        for i, op in enumerate(self.ops):
            if self.live[i] and i not in self.view_set and op.name == "full" and op.result not in self.graph_out:
                if all(self.is_ew(self.ops[u]) or _kind(self.ops[u]) == "optimizer"
                       or self.ops[u].name == "softmax_cross_entropy_grad" for u in self.users.get(op.result, [])):
                    out[op.result] = float(op.attrs["value"])
        return out

    def is_ew(self, op: Op) -> bool:
        return _kind(op) == "elementwise" or (op.name in SHAPE_AS_ELEMENTWISE and op.name not in self.policy.view_ops)

    # -- groups --------------------------------------------------------------------------
    def values_of(self, k: Kernel) -> list[Value]:
        return [r for i in k.ops for r in self.ops[i].results]

    def can_extend(self, k: Kernel, j: int) -> bool:
        """Op j may join k if no op outside k at or before j reads k's values."""
        for v in self.values_of(k):
            for u in self.users.get(v, []):
                if u <= j and u not in k.ops and u != j:
                    return False
        return True

    def at_first(self, k: Kernel) -> bool:
        return self.policy.placement == "first" and k.kind != "optimizer"

    def position(self, k: Kernel) -> int:
        return min(k.ops) if self.at_first(k) else max(k.ops)

    def may_join(self, k: Kernel, j: int, op: Op) -> bool:
        """Op j may join k without breaking the order of kernels (see FusionPolicy.placement)."""
        return self.ready_for(k, op) if self.at_first(k) else self.can_extend(k, j)

    def new(self, kind: str, i: int) -> Kernel:
        k = Kernel(kind, [i])
        self.kernels.append(k)
        self.group_of[i] = k
        return k

    def join(self, k: Kernel, i: int) -> None:
        k.ops.append(i)
        self.group_of[i] = k

    def kernel_of_value(self, v: Value) -> Kernel | None:
        i = self.index.get(v)
        return self.group_of.get(i) if i is not None else None

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> FusionPlan:
        sce_by_key: dict[tuple[int, int], Kernel] = {}
        optimizers: dict[tuple, Kernel] = {}
        for i, op in enumerate(self.ops):
            if not self.live[i] or i in self.view_set or (op.name == "full" and op.result in self.constants):
                continue
            if op.name == "matmul":
                self.new("gemm", i)
            elif _kind(op) == "optimizer":
                self.add_update(i, op, optimizers)
            elif op.name in SCE:
                key = (id(op.operands[0]), id(op.operands[1]))
                k = sce_by_key.get(key)
                if k is not None and self.may_join(k, i, op) and all(self.ops[j].name != op.name for j in k.ops):
                    self.join(k, i)
                else:
                    sce_by_key[key] = self.new("softmax_ce", i)
            elif op.name in ("sum", "mean"):
                k = self.colsum_host(i, op)
                if k is not None:
                    self.join(k, i)
                    k.colsums.append(op)
                else:
                    self.new("reduce", i)
            elif self.is_ew(op):
                target = self.elementwise_target(op, i)
                if target is not None:
                    self.join(target, i)
                else:
                    self.new("elementwise", i)
            elif op.name in SINGLE_OP_KINDS:
                self.new(SINGLE_OP_KINDS[op.name], i)
            elif op.name == "allreduce":
                raise MlpcError("fusion: allreduce is not a kernel: the data-parallel runtime splits the step at "
                                "it (passes/collective_split.py) and calls MPI between the two halves")
            else:
                raise MlpcError(f"fusion: no kernel kind for op {op.name}")
        return self.finish()

    def add_update(self, i: int, op: Op, optimizers: dict[tuple, Kernel]) -> None:
        key = optimizer_key(op) if self.policy.optimizer_by_key else ()
        k = optimizers.get(key)
        # an update reading another update's result (a second update of the same parameter) starts a
        # new kernel: an optimizer kernel runs its updates in any order and keeps no result in registers
        chained = k is not None and any(self.kernel_of_value(v) is k and _kind(self.ops[self.index[v]]) == "optimizer"
                                        for v in op.operands)
        if k is not None and not chained and self.can_extend(k, i):
            self.join(k, i)
        else:
            k = optimizers[key] = self.new("optimizer", i)
        if self.policy.rank_k_max > 0:
            self.absorb_rank_k_gradient(k, op, i)

    def absorb_rank_k_gradient(self, opt: Kernel, op: Op, i: int) -> None:
        """Move a rank-K weight-gradient matmul feeding update op `i` into the optimizer kernel."""
        g = op.operands[1]
        j = self.index.get(g)
        if j is None or not rank_k_gradient(self.ops[j], self.policy.rank_k_max):
            return
        k = self.group_of.get(j)
        if k is None or k.kind != "gemm" or k.ops != [j] or self.users.get(g) != [i]:
            return
        self.kernels.remove(k)
        opt.ops.append(j)
        opt.ops.sort()
        self.group_of[j] = opt

    def ready_for(self, k: Kernel, op: Op) -> bool:
        """Every operand of `op` is computed inside k or before k runs (for a kernel placed at its
        last op: by an op before k's first op)."""
        first = min(k.ops)
        for w in op.operands:
            r = self.root(w)
            j = self.index.get(r) if r is not None else None
            if j is None or r in self.constants:
                continue
            p = self.group_of.get(j)
            if p is k:
                if r is not w:
                    return False  # a view of a value still in registers
                continue
            if self.at_first(k) and p is not None:
                if self.position(p) >= first:  # computed where its kernel runs, maybe hoisted
                    return False
            elif j >= first:
                return False
        return True

    def colsum_host(self, i: int, op: Op) -> Kernel | None:
        src = op.operands[0]
        k = self.kernel_of_value(src)
        if k is None or k.kind not in self.policy.colsum_hosts or not colsum_axis0(op, src):
            return None
        if not self.may_join(k, i, op) or not self.reads_full_tile(k, src):
            return None
        return k

    def reads_full_tile(self, k: Kernel, v: Value) -> bool:
        """A column sum can ride on a gemm/softmax_ce kernel only for its [M, N] results."""
        if k.kind == "gemm":
            return v.shape == self.ops[k.ops[0]].result.shape
        return any(self.ops[i].name == "softmax_cross_entropy_grad" and self.ops[i].result is v for i in k.ops)

    def elementwise_target(self, op: Op, i: int) -> Kernel | None:
        """The gemm or elementwise kernel this op can join as an epilogue, or None."""
        shape = op.results[0].shape
        if op.name == "reshape":
            return None  # reads by flat index: starts its own group
        candidates: list[Kernel] = []
        for v in op.operands:
            k = self.kernel_of_value(v) if v not in self.constants else None
            if k is not None and k not in candidates:
                candidates.append(k)
        if self.policy.fuse_siblings:
            candidates += [k for k in self.kernels if k.kind == "elementwise" and k not in candidates]
        best: Kernel | None = None
        for k in candidates:
            if not self.fits(k, op, shape):
                continue
            if self.ready_for(k, op) and self.may_join(k, i, op) \
                    and (best is None or self.position(k) > self.position(best)):
                best = k
        if self.policy.merge_epilogues and best is not None and best.kind == "elementwise":
            for k in candidates:
                if k.kind == "gemm" and self.fits(k, op, shape) and self.may_join(k, i, op) \
                        and self.merge_into_epilogue(k, best, i):
                    return k
        return best

    def merge_into_epilogue(self, g: Kernel, e: Kernel, i: int) -> bool:
        """Move elementwise kernel e, and the elementwise kernels only it reads, into gemm g's epilogue if
        op i is all that reads their values and their other inputs are computed before g's matmul."""
        group = [e]
        inside = set(e.ops)
        for f in group:
            for j in f.ops:
                for w in self.ops[j].operands:
                    p = self.kernel_of_value(w)
                    if p is not None and p.kind == "elementwise" and p not in group and self.private_to(p, inside, i):
                        group.append(p)
                        inside |= set(p.ops)
        if any(self.private_to(f, inside, i) is False for f in group):
            return False
        mm = self.ops[g.ops[0]]
        for j in inside:
            op = self.ops[j]
            if op.results[0].shape != mm.result.shape or op.results[0].dtype != mm.result.dtype \
                    or not all(_epilogue_operand(w, mm.result.shape) for w in op.operands):
                return False
            for w in op.operands:
                r = self.root(w)
                src = self.index.get(r) if r is not None else None
                if src is None or r in self.constants or self.group_of.get(src) is g:
                    continue
                if src in inside:
                    if r is not w:
                        return False  # a view of a value that will be in registers
                elif src >= g.ops[0]:
                    return False
        for f in group:
            self.kernels.remove(f)
            for j in f.ops:
                self.group_of[j] = g
        g.ops[1:] = sorted(g.ops[1:] + list(inside))
        return True

    def private_to(self, k: Kernel, inside: set[int], i: int) -> bool:
        """Only k itself, ops in `inside` and op i read k's values, and none is a graph output."""
        return all(v not in self.graph_out and all(u in inside or u == i or u in k.ops for u in self.users.get(v, []))
                   for v in self.values_of(k))

    def fits(self, k: Kernel, op: Op, shape: tuple[int, ...]) -> bool:
        """The op computes on k's tile, and every operand it takes from k has that shape."""
        if k.kind == "gemm":
            mm = self.ops[k.ops[0]].result
            if shape != mm.shape or k.colsums or op.results[0].dtype != mm.dtype:
                return False
            if not all(_epilogue_operand(w, shape) for w in op.operands):
                return False
        elif k.kind != "elementwise" or self.ops[k.ops[0]].results[0].shape != shape:
            return False
        inside = set(self.values_of(k))
        return all(w.shape == shape for w in op.operands if w in inside)

    def finish(self) -> FusionPlan:
        ops = self.ops
        # order: fills first (no inputs), then by each kernel's position
        self.kernels.sort(key=lambda k: (k.kind != "fill", self.position(k)))
        for n, k in enumerate(self.kernels):
            k.index = n
            inside = set(self.values_of(k))
            seen: set[Value] = set()
            for i in k.ops:
                for w in ops[i].operands:
                    v = self.root(w)
                    if v is not None and v not in inside and v not in self.constants and v not in seen:
                        seen.add(v)
                        k.inputs.append(v)
            for v in self.values_of(k):
                outside = [u for u in self.users.get(v, []) if u not in k.ops]
                if outside or v in self.graph_out:
                    k.outputs.append(v)
        dead = [i for i in range(len(ops)) if not self.live[i]]
        return FusionPlan(self.g, self.kernels, self.constants, dead, self.views, self.policy)


def fuse(graph: Graph, policy: FusionPolicy = CPU_POLICY) -> FusionPlan:
    """Group the live ops of `graph` into kernels the way `policy` allows (module docstring)."""
    return _Planner(graph, policy).run()


def _epilogue_operand(w: Value, shape: tuple[int, ...]) -> bool:
    """Operand shapes a gemm epilogue reads: the tile itself, a row [N] / [1,N], a column [M,1], a scalar."""
    m, n = shape
    return w.shape in ((m, n), (n,), (1, n), (m, 1), (), (1,), (1, 1))
