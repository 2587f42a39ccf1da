"""Kernel plans: a training graph grouped into fused GPU kernels over planned buffers (target-neutral)."""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.triton_dropout import DropoutKernel, plan_dropout
from codegen.views import UnsupportedError, View, constant, contiguous, shape2
from mlpc.ir import Graph, Op, Value
from mlpc.types import DType


@dataclass
class Buffer:
    """One allocation: `numel` elements of `dtype`; `arena` names the flat group it lives in."""

    name: str
    numel: int
    dtype: DType
    kind: str  # "data" | "state" | "temp" | "arena"
    source: str = ""  # input name for data/state buffers


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
    """One multi-tensor optimizer update over flat arenas: p, g, state slots, step count t."""

    name: str
    opname: str
    attrs: dict
    n: int
    p: View
    g: View
    slots: list[View]
    t: View


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


VIEW_OPS = ("reshape", "broadcast_to", "transpose", "full")
SM_COUNT = 132


class Planner:
    """Greedy fusion: matmul + elementwise epilogue, elementwise chains, reductions, SCE, optimizers."""

    def __init__(self, graph: Graph, sm_count: int = SM_COUNT, precision: str = "tf32") -> None:
        self.g = graph
        self.sm = sm_count
        self.precision = precision
        self.views: dict[Value, View] = {}
        self.buffers: dict[str, Buffer] = {}
        self.kernels: list[Kernel] = []
        self.done: set[int] = set()
        self.users = graph.users()
        self.out_values = {o.value for o in graph.outputs}
        self.grad_dest: dict[Value, View] = {}
        self.counter = 0

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
        opt_groups = self.optimizer_groups()
        inputs: dict[str, View] = {}
        arena_inputs = self.assign_arenas(opt_groups)
        for inp in self.g.inputs:
            if inp.name in arena_inputs:
                v = arena_inputs[inp.name]
            else:
                kind = "data" if inp.role == "data" else "state"
                v = contiguous(self.new_buffer("in", inp.value.type.size, inp.value.dtype, kind, inp.name),
                               inp.value.shape, inp.value.dtype)
            inputs[inp.name] = v
            self.views[inp.value] = v
        opt_ops = {id(op) for ops, _ in opt_groups for op in ops}
        for op in self.g.ops:  # constants (and dropout masks, which read only t) are ready before any kernel
            if op.name in ("full", "dropout_mask"):
                self.lower_op(0, op)
        for i, op in enumerate(self.g.ops):
            if id(op) in self.done or id(op) in opt_ops:
                continue
            self.lower_op(i, op)
        for ops, views in opt_groups:
            self.emit_optimizer(ops, views)
        outputs, copies = self.place_outputs(inputs, opt_ops)
        copies = self.defer_state_updates(copies)
        return Plan(self.g, self.kernels, self.buffers, inputs, outputs, copies)

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
            if any(written & {v.buf for v in _reads(other)} for other in self.kernels if other is not k):
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

    def lower_op(self, index: int, op: Op) -> None:
        self.done.add(id(op))
        if op.name in VIEW_OPS:
            self.views[op.result] = self.view_op(op)
        elif op.name == "matmul":
            self.emit_matmul(op)
        elif op.name in ("sum", "mean", "max"):
            self.emit_reduce(op)
        elif op.name in ("softmax_cross_entropy", "softmax_cross_entropy_grad"):
            self.emit_sce(index, op)
        elif op.name in ("softmax", "log_softmax", "one_hot"):
            self.emit_rowwise(op)
        elif op.name == "dropout_mask":
            self.kernels.append(plan_dropout(self, op))
        elif _is_elementwise(op):
            tile = shape2(op.result.shape)
            body = Body()
            self.add_to_body(body, op)
            self.absorb(body, tile, siblings=True)
            self.finish_body(body)
            self.kernels.append(EwiseKernel(self.kname("ew"), tile, body))
        else:
            raise UnsupportedError(f"the triton backend has no kernel for op {op.name!r}")

    # -- view ops -------------------------------------------------------------------------
    def view_op(self, op: Op) -> View:
        res = op.result
        if op.name == "full":
            return constant(op.attrs["value"], res.shape, res.dtype)
        src = self.views[op.operands[0]]
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
            raise UnsupportedError(f"value {v} used before it was computed")
        return self.views[v]

    # -- fused elementwise bodies -----------------------------------------------------------
    def add_to_body(self, body: Body, op: Op) -> None:
        local = set(body.roots) | {r for o in body.ops for r in o.results}
        for v in op.operands:
            if v not in local and v not in body.ext:
                body.ext[v] = self.view(v)
        body.ops.append(op)
        self.done.add(id(op))

    def absorb(self, body: Body, tile: tuple[int, int], siblings: bool = False) -> None:
        """Pull in every later elementwise op on this tile whose operands are ready now: users of
        the body's values, and with `siblings` also ops that read only ready values."""
        changed = True
        while changed:
            changed = False
            local = set(body.roots) | {r for o in body.ops for r in o.results}
            candidates = [u for v in local for u in self.users.get(v, [])]
            if siblings:
                candidates += self.g.ops
            for u in candidates:
                if id(u) in self.done or not _is_elementwise(u) or shape2(u.result.shape) != tile:
                    continue
                if all(w in local or (w in self.views and _broadcastable(self.views[w], tile))
                       for w in u.operands):
                    self.add_to_body(body, u)
                    changed = True
                    break

    def finish_body(self, body: Body, extra_local: tuple[Value, ...] = (), fused: tuple[Op, ...] = ()) -> None:
        """Store every body value that something outside the kernel (or the graph's outputs) reads."""
        inside = {id(o) for o in body.ops} | {id(o) for o in fused}
        for v in list(extra_local) + [r for o in body.ops for r in o.results]:
            needed = v in self.out_values or any(id(u) not in inside for u in self.users.get(v, []))
            if needed:
                view = self.temp_view(v)
                body.stores.append((v, view))
                self.views[v] = view

    # -- matmul ---------------------------------------------------------------------------
    def emit_matmul(self, op: Op) -> None:
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
        self.absorb(body, (m, n))
        sums = self.column_sums(body, (m, n))
        inside = {id(o) for o in body.ops} | {id(u) for _, u in sums}
        root_needed = root in self.out_values or any(id(u) not in inside for u in self.users.get(root, []))
        split = 1 if body.ops or sums else choose_split_k(m, n, k, self.sm, self.precision)
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
        self.finish_body(body, (root,) if root_needed else (), tuple(u for _, u in sums))
        blocks = -(-m // matmul_row_block(m, n, k, self.precision))
        for v, _ in sums:  # per row-block partial column sums, then one small reduction
            part = contiguous(self.new_buffer("t", blocks * n, v.dtype), (blocks, n), v.dtype)
            kern.colsums.append((v, part))
        self.kernels.append(kern)
        for (_, u), (_, part) in zip(sums, kern.colsums, strict=True):
            out = self.temp_view(u.result)
            self.views[u.result] = out
            self.add_reduce(part, View(out.buf, (1, n), (n, 1), out.dtype, out.offset), "sum", 1.0)

    def column_sums(self, body: Body, tile: tuple[int, int]) -> list[tuple[Value, Op]]:
        """sum(v, axes=[0]) of body values (bias gradients): fused as column sums of each tile."""
        found = []
        for v in list(body.roots) + [r for o in body.ops for r in o.results]:
            if v.type.rank != 2 or v.dtype.value != "f32":
                continue
            for u in self.users.get(v, []):
                if id(u) not in self.done and u.name == "sum" and {a % 2 for a in u.attrs["axes"]} == {0}:
                    found.append((v, u))
                    self.done.add(id(u))
        return found

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
        res = op.result
        out = self.temp_view(res)
        self.views[res] = out
        if not axes:
            self.kernels.append(EwiseKernel(self.kname("ew"), shape2(res.shape),
                                            Body([], {x: src}, [(x, out)])))
            return
        if rank == 2 and axes == {0}:
            col = src
        elif rank == 2 and axes == {1}:
            col = src.transposed()
        else:  # everything: reduce columns, then the row of column results
            flat_rows, flat_cols = src.shape
            part = contiguous(self.new_buffer("t", flat_cols, res.dtype), (flat_cols,), res.dtype)
            self.add_reduce(src, part, kind, 1.0)
            col = part.transposed()
        flat_out = View(out.buf, (1, col.shape[1]), (col.shape[1], 1), out.dtype, out.offset)
        self.add_reduce(col, flat_out, kind, scale)

    def add_reduce(self, src: View, out: View, kind: str, scale: float) -> None:
        rows, cols = src.shape
        splits = choose_reduce_splits(rows, cols, self.sm)
        if splits > 1:
            part = contiguous(self.new_buffer("t", splits * cols, out.dtype), (splits, cols), out.dtype)
            self.kernels.append(ReduceKernel(self.kname("red"), src, part, kind, splits))
            src = part
        self.kernels.append(ReduceKernel(self.kname("red"), src, out, kind, 1, scale))

    # -- softmax cross-entropy ------------------------------------------------------------
    def emit_sce(self, index: int, op: Op) -> None:
        logits, labels = op.operands[0], op.operands[1]
        loss_op = op if op.name == "softmax_cross_entropy" else None
        grad_op = op if op.name == "softmax_cross_entropy_grad" else None
        for later in self.g.ops[index + 1:]:
            if id(later) in self.done or later.operands[:2] != [logits, labels]:
                continue
            if loss_op is None and later.name == "softmax_cross_entropy":
                loss_op = later
            elif grad_op is None and later.name == "softmax_cross_entropy_grad" and later.operands[2] in self.views:
                grad_op = later
        batch, classes = logits.shape
        rows = choose_sce_rows(batch, classes)
        programs = -(-batch // rows)
        partial = None
        if loss_op is not None:
            self.done.add(id(loss_op))
            partial = contiguous(self.new_buffer("t", programs, logits.dtype), (programs,), logits.dtype)
        grad = None
        g = None
        if grad_op is not None:
            self.done.add(id(grad_op))
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
                                          choose_sce_rows(rows, cols)))

    # -- optimizers -----------------------------------------------------------------------
    def optimizer_groups(self) -> list[tuple[list[Op], dict]]:
        groups: dict[tuple, list[Op]] = {}
        for op in self.g.ops:
            if op.name in ("adam_update", "sgd_update", "momentum_update"):
                key = (op.name, tuple(sorted(op.attrs.items())), op.operands[-1], op.operands[0].dtype)
                groups.setdefault(key, []).append(op)
        return [(ops, {}) for ops in groups.values()]

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
        self.kernels.append(OptKernel(self.kname("opt"), op0.name, dict(op0.attrs), n, flat[0], flat[1],
                                      flat[2:], self.view(op0.operands[-1])))
        for op in ops:
            self.done.add(id(op))

    # -- outputs --------------------------------------------------------------------------
    def place_outputs(self, inputs: dict[str, View], opt_ops: set[int]) -> tuple[dict[str, View], list]:
        outputs: dict[str, View] = {}
        copies: list[tuple[View, View]] = []
        for o in self.g.outputs:
            if o.name in inputs:
                producer = o.value.producer
                if producer is not None and id(producer) in opt_ops:
                    continue  # updated in place by the optimizer kernel
                src = self.view(o.value)
                if src != inputs[o.name]:
                    copies.append((src, inputs[o.name]))
            else:
                outputs[o.name] = self.view(o.value)
        return outputs, copies


def _reads(k: Kernel) -> list[View]:
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
    return [k.p, k.g, *k.slots, k.t]


def _is_elementwise(op: Op) -> bool:
    from mlpc.ops import get

    return get(op.name).kind == "elementwise"


def _broadcastable(v: View, tile: tuple[int, int]) -> bool:
    return all(v.shape[d] in (1, tile[d]) for d in range(2))


def matmul_row_block(m: int, n: int, k: int, precision: str) -> int:
    """BLOCK_M of an m x n x k matmul (the epilogue's column-sum partials have one row per block)."""
    from codegen.triton_config import matmul_blocks

    return matmul_blocks(m, n, k, precision)[0]


def choose_split_k(m: int, n: int, k: int, sm: int, precision: str = "tf32") -> int:
    """Split the K loop when the output has too few tiles to fill the GPU (two programs per SM)
    and K is long (at least 8 blocks of K per program)."""
    from codegen.triton_config import matmul_blocks

    bm, bn, bk = matmul_blocks(m, n, k, precision)[:3]
    tiles = -(-m // bm) * -(-n // bn)
    if tiles >= sm or k < 8 * bk * 4:
        return 1
    split = min(-(-2 * sm // tiles), k // (bk * 8), 512)
    return max(split, 1)


def choose_reduce_splits(rows: int, cols: int, sm: int) -> int:
    from codegen.triton_config import reduce_blocks

    br, bc = reduce_blocks(rows, cols)
    colblocks = -(-cols // bc)
    if rows < 8 * br:
        return 1
    return max(1, min(-(-rows // (4 * br)), -(-2 * sm // colblocks)))


def choose_sce_rows(batch: int, classes: int) -> int:
    from codegen.triton_config import sce_blocks

    return sce_blocks(batch, classes)[0]


def rewrite_for_gpu(graph: Graph) -> Graph:
    """relu_grad(z, g) -> relu_grad(relu(z), g) where relu(z) exists (same sign test, one less store)."""
    relu_of: dict[Value, Value] = {}
    for op in graph.ops:
        if op.name == "relu":
            relu_of.setdefault(op.operands[0], op.result)
    ops = []
    for op in graph.ops:
        if op.name == "relu_grad" and op.operands[0] in relu_of:
            ops.append(Op(op.name, [relu_of[op.operands[0]], op.operands[1]], op.results, dict(op.attrs), op.loc))
        elif op.name == "mse":
            ops.extend(_mse_ops(op))
        else:
            ops.append(op)
    return graph.replace(ops=ops)


def _mse_ops(op: Op) -> list[Op]:
    """mse(p, t) as mean(square(p - t)) over every axis; the last op keeps the original result."""
    p, t = op.operands
    d = Value(p.type, "mse.d")
    sq = Value(p.type, "mse.sq")
    sub = Op("sub", [p, t], [d], {}, op.loc)
    square = Op("square", [d], [sq], {}, op.loc)
    mean = Op("mean", [sq], op.results, {"axes": tuple(range(p.type.rank)), "keepdims": False}, op.loc)
    d.producer, sq.producer = sub, square
    return [sub, square, mean]


def plan_graph(graph: Graph, sm_count: int = SM_COUNT, precision: str = "tf32") -> Plan:
    """Group `graph` into kernels; raises UnsupportedError for ops without a GPU kernel."""
    return Planner(rewrite_for_gpu(graph), sm_count, precision).plan()
