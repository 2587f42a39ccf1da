"""Triton kernel plans: the planner's kernels (passes/fusion.py) lowered to GPU launches over buffers."""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.triton_dropout import DropoutKernel, plan_dropout
from codegen.triton_policy import SM_COUNT, TritonPolicy
from codegen.views import UnsupportedError, View, constant, contiguous, shape2
from mlpc.ir import Graph, Op, Value
from mlpc.ops.optim import split_operands
from mlpc.types import DType
from passes.fusion import fuse
from passes.gpu import apply_rewrites
from passes.plan import FusionPlan
from passes.plan import Kernel as PlannedKernel


@dataclass
class Buffer:
    """One allocation: `numel` elements of `dtype`; `arena` names the flat group it lives in."""

    name: str
    numel: int
    dtype: DType
    kind: str  # "data" | "state" | "temp" | "arena"
    source: str = ""  # input name for data/state buffers
    offset: int | None = None  # byte offset of a temporary in the step's pool (codegen/triton_memory.py)


@dataclass
class Body:
    """A fused elementwise body: ops computed in registers over one tile shape."""

    ops: list[Op] = field(default_factory=list)
    ext: dict[Value, View] = field(default_factory=dict)  # operands read from memory or constants
    stores: list[tuple[Value, View]] = field(default_factory=list)
    roots: tuple[Value, ...] = ()  # values computed before the body (the matmul accumulator)


@dataclass
class MatmulKernel:
    """C = A @ B (transposes folded into the views' strides) with a fused epilogue body."""

    name: str
    a: View
    b: View
    m: int
    n: int
    k: int
    root: Value
    body: Body
    split_k: int = 1
    partial: View | None = None  # [split_k, m*n] scratch when split_k > 1
    colsums: list[tuple[Value, View]] = field(default_factory=list)  # value -> [row blocks, n] partials


@dataclass
class EwiseKernel:
    """A chain of elementwise ops over one tile shape."""

    name: str
    shape: tuple[int, int]
    body: Body


@dataclass
class ReduceKernel:
    """out[s, c] = op over rows r of chunk s of src[r, c], times `scale` (column reduction)."""

    name: str
    src: View
    out: View
    op: str  # "sum" | "max"
    splits: int
    scale: float = 1.0


@dataclass
class SceKernel:
    """Row-wise softmax cross-entropy: per-program loss partial sums and/or the fused gradient."""

    name: str
    logits: View
    labels: View
    g: View | None
    partial: View | None
    grad: View | None
    rows_per_program: int


@dataclass
class RowwiseKernel:
    """softmax / log_softmax over the last axis of [R, C], or one_hot of i32 labels [R] -> [R, C]."""

    name: str
    op: str
    src: View
    out: View
    rows: int
    cols: int
    rows_per_program: int


@dataclass
class OptKernel:
    """One multi-tensor optimizer update over flat arenas: p, g, state slots, step count t, and the
    runtime hyperparameter scalars (name -> view, see mlpc.ops.optim.hyper_names)."""

    name: str
    opname: str
    attrs: dict
    n: int
    p: View
    g: View
    slots: list[View]
    t: View
    hyper: dict[str, View] = field(default_factory=dict)


Kernel = MatmulKernel | EwiseKernel | ReduceKernel | SceKernel | RowwiseKernel | OptKernel | DropoutKernel


@dataclass
class Plan:
    """Kernels in launch order, the buffers they use, and where each graph output lives."""

    graph: Graph
    kernels: list[Kernel]
    buffers: dict[str, Buffer]
    inputs: dict[str, View]  # graph input name -> view (arena slices for updated state)
    outputs: dict[str, View]  # non-state outputs
    copies: list[tuple[View, View]]  # (src, dst) after all kernels: state outputs not updated in place
    fusion: FusionPlan | None = None  # the planner's kernels this plan lowers
    pool_bytes: int = 0  # one device allocation holding every temporary (codegen/triton_memory.py)
    origin: dict[str, str] = field(default_factory=dict)  # launch name -> the planned kernel it lowers


class Lowering:
    """Lowers the planner's kernels (passes/fusion.py) to Triton kernels over planned buffers."""

    def __init__(self, fplan: FusionPlan, policy: TritonPolicy) -> None:
        self.fplan = fplan
        self.g = fplan.graph
        self.policy = policy
        self.view_op: dict[Value, Op] = {self.g.ops[i].result: self.g.ops[i] for i in fplan.views}
        self.views: dict[Value, View] = {}
        self.buffers: dict[str, Buffer] = {}
        self.kernels: list[Kernel] = []
        self.grad_dest: dict[Value, View] = {}
        self.counter = 0
        self.exports: set[Value] = set()  # the current kernel's values that others read

    # -- buffers --------------------------------------------------------------------------
    def new_buffer(self, prefix: str, numel: int, dtype: DType, kind: str = "temp", source: str = "") -> str:
        name = f"{prefix}{len(self.buffers)}"
        self.buffers[name] = Buffer(name, max(numel, 1), dtype, kind, source)
        return name

    def temp_view(self, v: Value) -> View:
        if v in self.grad_dest:
            return self.grad_dest.pop(v)
        return contiguous(self.new_buffer("t", v.type.size, v.dtype), v.shape, v.dtype)

    def kname(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}_{self.counter}"

    # -- driver ---------------------------------------------------------------------------
    def plan(self) -> Plan:
        opt_kernels = [k for k in self.fplan.kernels if k.kind == "optimizer"]
        groups: dict[int, tuple[list[Op], dict]] = {k.index: ([self.g.ops[i] for i in k.ops], {}) for k in opt_kernels}
        arena_inputs = self.assign_arenas(list(groups.values()))
        inputs: dict[str, View] = {}
        for inp in self.g.inputs:
            if inp.name in arena_inputs:
                v = arena_inputs[inp.name]
            else:
                kind = "data" if inp.role == "data" else "state"
                v = contiguous(self.new_buffer("in", inp.value.type.size, inp.value.dtype, kind, inp.name),
                               inp.value.shape, inp.value.dtype)
            inputs[inp.name] = v
            self.views[inp.value] = v
        origin: dict[str, str] = {}
        for k in self.fplan.kernels:
            self.exports = set(k.outputs)
            before = len(self.kernels)
            if k.kind == "optimizer":
                self.emit_optimizer(*groups[k.index])
            else:
                self.lower(k)
            origin.update((launch.name, k.name) for launch in self.kernels[before:])
        opt_ops = {id(self.g.ops[i]) for k in opt_kernels for i in k.ops}
        outputs, copies = self.place_outputs(inputs, opt_ops)
        copies = self.defer_state_updates(copies)
        return Plan(self.g, self.kernels, self.buffers, inputs, outputs, copies, self.fplan, origin=origin)

    def defer_state_updates(self, copies: list[tuple[View, View]]) -> list[tuple[View, View]]:
        """An elementwise kernel that only computes new state (the step count t + 1) runs after the
        optimizer and writes the state in place, instead of a temporary plus a copy."""
        dest = {id(src): dst for src, dst in copies}
        deferred: list[Kernel] = []
        removed: set[int] = set()
        for k in self.kernels:
            if not isinstance(k, EwiseKernel) or not k.body.stores:
                continue
            if not all(id(view) in dest for _, view in k.body.stores):
                continue
            written = {view.buf for _, view in k.body.stores}
            if any(written & {v.buf for v in reads(other)} for other in self.kernels if other is not k):
                continue
            targets = [dest[id(view)] for _, view in k.body.stores]
            target_bufs = {t.buf for t in targets}
            safe = all(self.buffers[v.buf].kind != "arena" and (v.buf not in target_bufs or v in targets)
                       for v in k.body.ext.values() if v.buf is not None)
            if not safe:
                continue
            removed |= {id(view) for _, view in k.body.stores}
            k.body.stores = [(value, dest[id(view)]) for value, view in k.body.stores]
            deferred.append(k)
        self.kernels = [k for k in self.kernels if all(k is not d for d in deferred)] + deferred
        return [(src, dst) for src, dst in copies if id(src) not in removed]

    def lower(self, k: PlannedKernel) -> None:
        ops = [self.g.ops[i] for i in k.ops]
        op = ops[0]
        if k.kind == "gemm":
            self.emit_matmul(op, [o for o in ops[1:] if o not in k.colsums], k.colsums)
        elif k.kind == "reduce":
            self.emit_reduce(op)
        elif k.kind == "softmax_ce":
            self.emit_sce(ops)
        elif k.kind == "rowwise":
            self.emit_rowwise(op)
        elif k.kind == "mse":
            self.emit_mse(op)
        elif k.kind == "fill" and op.name == "dropout_mask":  # reads only t: planned first
            self.kernels.append(plan_dropout(self, op))
        elif k.kind == "elementwise":
            tile = shape2(op.result.shape)
            body = Body()
            for o in ops:
                self.add_to_body(body, o)
            self.finish_body(body)
            self.kernels.append(EwiseKernel(self.kname("ew"), tile, body))
        else:
            raise UnsupportedError(f"the triton backend has no kernel for op {op.name!r}")

    # -- view ops -------------------------------------------------------------------------
    def make_view(self, op: Op) -> View:
        res = op.result
        if op.name == "full":
            return constant(op.attrs["value"], res.shape, res.dtype)
        src = self.view(op.operands[0])
        if op.name == "reshape":
            if src.is_const:
                return constant(src.const or 0.0, res.shape, res.dtype)
            if not src.contiguous:
                raise UnsupportedError("reshape of a strided view")
            return contiguous(src.buf or "", res.shape, res.dtype, src.offset)
        if op.name == "broadcast_to":
            return src.broadcast_to(shape2(res.shape))
        perm = tuple(op.attrs["perm"]) if op.attrs.get("perm") else tuple(reversed(range(res.type.rank)))
        return src.transposed() if perm == (1, 0) else src

    def view(self, v: Value) -> View:
        if v not in self.views:
            if v not in self.view_op:
                raise UnsupportedError(f"value {v} used before it was computed")
            self.views[v] = self.make_view(self.view_op[v])
        return self.views[v]

    # -- fused elementwise bodies -----------------------------------------------------------
    def add_to_body(self, body: Body, op: Op) -> None:
        local = set(body.roots) | {r for o in body.ops for r in o.results}
        for v in op.operands:
            if v not in local and v not in body.ext:
                body.ext[v] = self.view(v)
        body.ops.append(op)

    def finish_body(self, body: Body, extra_local: tuple[Value, ...] = ()) -> None:
        """Store every body value that another kernel (or the graph's outputs) reads."""
        for v in list(extra_local) + [r for o in body.ops for r in o.results]:
            if v in self.exports:
                view = self.temp_view(v)
                body.stores.append((v, view))
                self.views[v] = view

    # -- matmul ---------------------------------------------------------------------------
    def emit_matmul(self, op: Op, epilogue: list[Op], colsums: list[Op]) -> None:
        a, b = (self.view(v) for v in op.operands)
        if a.is_const or b.is_const:
            raise UnsupportedError("matmul of a constant operand")
        if op.attrs.get("transpose_a"):
            a = a.transposed()
        if op.attrs.get("transpose_b"):
            b = b.transposed()
        m, k = a.shape
        n = b.shape[1]
        root = op.result
        body = Body(roots=(root,))
        for o in epilogue:
            self.add_to_body(body, o)
        root_needed = root in self.exports
        split = 1 if body.ops or colsums else self.policy.split_k(m, n, k)
        kern = MatmulKernel(self.kname("mm"), a, b, m, n, k, root, body, split)
        if split > 1 and root_needed:
            kern.partial = contiguous(self.new_buffer("t", split * m * n, root.dtype), (split, m * n), root.dtype)
            self.kernels.append(kern)
            out = self.temp_view(root)
            self.views[root] = out
            flat = View(out.buf, (1, m * n), (m * n, 1), out.dtype, out.offset)
            self.kernels.append(ReduceKernel(self.kname("red"), kern.partial, flat, "sum", 1))
            return
        kern.split_k = 1
        self.finish_body(body, (root,) if root_needed else ())
        blocks = -(-m // self.policy.matmul_row_block(m, n, k))
        for u in colsums:  # per row-block partial column sums, then one small reduction
            v = u.operands[0]
            part = contiguous(self.new_buffer("t", blocks * n, v.dtype), (blocks, n), v.dtype)
            kern.colsums.append((v, part))
        self.kernels.append(kern)
        for u, (_, part) in zip(colsums, kern.colsums, strict=True):
            out = self.temp_view(u.result)
            self.views[u.result] = out
            scale = 1.0 / m if u.name == "mean" else 1.0
            self.add_reduce(part, View(out.buf, (1, n), (n, 1), out.dtype, out.offset), "sum", scale)

    # -- reductions -----------------------------------------------------------------------
    def emit_reduce(self, op: Op) -> None:
        x = op.operands[0]
        src = self.view(x)
        if src.is_const:
            raise UnsupportedError(f"{op.name} of a constant")
        rank = x.type.rank
        axes = {a % rank for a in op.attrs["axes"]} if rank else set()
        kind = "max" if op.name == "max" else "sum"
        count = x.type.size // max(op.result.type.size, 1)
        scale = 1.0 / count if op.name == "mean" and count else 1.0
        self.reduce_into(op.result, src, rank, axes, kind, scale)

    def reduce_into(self, res: Value, src: View, rank: int, axes: set[int], kind: str, scale: float) -> None:
        out = self.temp_view(res)
        self.views[res] = out
        if not axes:
            self.kernels.append(EwiseKernel(self.kname("ew"), shape2(res.shape),
                                            Body([], {res: src}, [(res, out)])))
            return
        if rank == 2 and axes == {0}:
            col = src
        elif rank == 2 and axes == {1}:
            col = src.transposed()
        else:  # everything: reduce columns, then the row of column results
            flat_cols = src.shape[1]
            part = contiguous(self.new_buffer("t", flat_cols, res.dtype), (flat_cols,), res.dtype)
            self.add_reduce(src, part, kind, 1.0)
            col = part.transposed()
        flat_out = View(out.buf, (1, col.shape[1]), (col.shape[1], 1), out.dtype, out.offset)
        self.add_reduce(col, flat_out, kind, scale)

    def add_reduce(self, src: View, out: View, kind: str, scale: float) -> None:
        rows, cols = src.shape
        splits = self.policy.reduce_splits(rows, cols)
        if splits > 1:
            part = contiguous(self.new_buffer("t", splits * cols, out.dtype), (splits, cols), out.dtype)
            self.kernels.append(ReduceKernel(self.kname("red"), src, part, kind, splits))
            src = part
        self.kernels.append(ReduceKernel(self.kname("red"), src, out, kind, 1, scale))

    def emit_mse(self, op: Op) -> None:
        """mse(p, t): square(p - t) in one elementwise pass into a temporary, then its mean."""
        p, t = op.operands
        d, sq = Value(p.type, "mse.d"), Value(p.type, "mse.sq")
        body = Body()
        self.add_to_body(body, Op("sub", [p, t], [d], {}, op.loc))
        self.add_to_body(body, Op("square", [d], [sq], {}, op.loc))
        tmp = self.temp_view(sq)
        body.stores.append((sq, tmp))
        self.kernels.append(EwiseKernel(self.kname("ew"), shape2(p.shape), body))
        rank = p.type.rank
        self.reduce_into(op.result, tmp, rank, set(range(rank)), "sum", 1.0 / max(p.type.size, 1))

    # -- softmax cross-entropy ------------------------------------------------------------
    def emit_sce(self, ops: list[Op]) -> None:
        loss_op = next((o for o in ops if o.name == "softmax_cross_entropy"), None)
        grad_op = next((o for o in ops if o.name == "softmax_cross_entropy_grad"), None)
        logits, labels = ops[0].operands[0], ops[0].operands[1]
        batch, classes = logits.shape
        rows = self.policy.rows_per_program(batch, classes)
        programs = -(-batch // rows)
        partial = None
        if loss_op is not None:
            partial = contiguous(self.new_buffer("t", programs, logits.dtype), (programs,), logits.dtype)
        grad = None
        g = None
        if grad_op is not None:
            g = self.view(grad_op.operands[2])
            grad = self.temp_view(grad_op.result)
            self.views[grad_op.result] = grad
        self.kernels.append(SceKernel(self.kname("sce"), self.view(logits), self.view(labels), g,
                                      partial, grad, rows))
        if loss_op is not None and partial is not None:
            out = self.temp_view(loss_op.result)
            self.views[loss_op.result] = out
            self.add_reduce(partial.transposed(), View(out.buf, (1, 1), (1, 1), out.dtype, out.offset),
                            "sum", 1.0 / batch)

    def emit_rowwise(self, op: Op) -> None:
        src = self.view(op.operands[0])
        res = op.result
        if res.type.rank != 2 or src.is_const or not src.contiguous:
            raise UnsupportedError(f"the triton backend runs {op.name} on contiguous [rows, classes] tensors only")
        rows, cols = res.shape
        out = self.temp_view(res)
        self.views[res] = out
        self.kernels.append(RowwiseKernel(self.kname("row"), op.name, src, out, rows, cols,
                                          self.policy.rows_per_program(rows, cols)))

    def assign_arenas(self, groups: list[tuple[list[Op], dict]]) -> dict[str, View]:
        """Give each optimizer group flat arenas (params, grads, each state slot) in one order."""
        in_name = {i.value: i.name for i in self.g.inputs}
        out_name = {o.value: o.name for o in self.g.outputs}
        placed: dict[str, View] = {}
        for ops, views in groups:
            nslots = len(ops[0].results) - 1
            for op in ops:
                p = op.operands[0]
                state = op.operands[2:2 + nslots]
                for arg, res in zip([p] + state, op.results, strict=False):
                    name = in_name.get(arg)
                    if name is None or out_name.get(res) != name or name in placed:
                        raise UnsupportedError(f"{op.name}: parameter/state must be graph inputs updated in place")
            total = sum(op.operands[0].type.size for op in ops)
            dt = ops[0].operands[0].dtype
            arenas = [self.new_buffer("arena", total, dt, "arena") for _ in range(nslots + 2)]
            views["arenas"] = arenas
            views["n"] = total
            off = 0
            for op in ops:
                p = op.operands[0]
                slots = [p, op.operands[1]] + op.operands[2:2 + nslots]
                for j, v in enumerate(slots):
                    view = contiguous(arenas[j], v.shape, v.dtype, off)
                    if j == 1:
                        self.grad_dest[v] = view
                    else:
                        placed[in_name[v]] = view
                off += p.type.size
        return placed

    def emit_optimizer(self, ops: list[Op], views: dict) -> None:
        for op in ops:
            g = op.operands[1]
            if g in self.grad_dest:  # the gradient was not stored by a kernel: copy it in
                dest = self.grad_dest.pop(g)
                self.kernels.append(EwiseKernel(self.kname("ew"), dest.shape,
                                                Body([], {g: self.view(g)}, [(g, dest)])))
        arenas = views["arenas"]
        op0 = ops[0]
        dt = op0.operands[0].dtype
        n = views["n"]
        flat = [View(a, (1, n), (n, 1), dt) for a in arenas]
        _, t, hyper = split_operands(op0.name, op0.attrs, op0.operands)
        self.kernels.append(OptKernel(self.kname("opt"), op0.name, dict(op0.attrs), n, flat[0], flat[1],
                                      flat[2:], self.view(t), {k: self.view(v) for k, v in hyper.items()}))

    # -- outputs --------------------------------------------------------------------------
    def place_outputs(self, inputs: dict[str, View], opt_ops: set[int]) -> tuple[dict[str, View], list]:
        outputs: dict[str, View] = {}
        copies: list[tuple[View, View]] = []
        producer = {r: op for op in self.g.ops for r in op.results}
        for o in self.g.outputs:
            if o.name in inputs:
                p = producer.get(o.value)
                if p is not None and id(p) in opt_ops:
                    continue  # updated in place by the optimizer kernel
                src = self.view(o.value)
                if src != inputs[o.name]:
                    copies.append((src, inputs[o.name]))
            else:
                outputs[o.name] = self.view(o.value)
        return outputs, copies


def reads(k: Kernel) -> list[View]:
    """Every view a kernel reads."""
    if isinstance(k, MatmulKernel):
        return [k.a, k.b, *k.body.ext.values()]
    if isinstance(k, EwiseKernel):
        return list(k.body.ext.values())
    if isinstance(k, ReduceKernel):
        return [k.src]
    if isinstance(k, SceKernel):
        return [k.logits, k.labels] + ([k.g] if k.g is not None else [])
    if isinstance(k, RowwiseKernel):
        return [k.src]
    if isinstance(k, DropoutKernel):
        return [k.t]
    return [k.p, k.g, *k.slots, k.t, *k.hyper.values()]


def plan_graph(graph: Graph, sm_count: int = SM_COUNT, precision: str = "tf32") -> Plan:
    """Plan `graph` with the Triton policy and lower the kernels; raises UnsupportedError for ops
    without a GPU kernel."""
    policy = TritonPolicy(sm_count=sm_count, precision=precision)
    from codegen.triton_memory import plan_pool

    fplan = fuse(apply_rewrites(graph, policy.rewrites), policy)
    plan = Lowering(fplan, policy).plan()
    plan_pool(plan)
    return plan
