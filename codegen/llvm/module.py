"""Builds the LLVM module of one training step: one function per fused kernel, and `mlpc_step`.

`int mlpc_step(void **args)`: args[0] is the arena, args[1 + i] the buffer of the graph's i-th input.
`mlpc_body(args, tid, barrier)` calls the kernels in order; a kernel that splits over threads gets
every thread's call (each takes its share by `tid`), a small kernel runs on thread 0 only, and a
barrier separates kernels that depend on another thread's writes. How threads are started and
parked is in threads.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llvmlite import ir

from codegen.llvm import PROFILE, linalg, threads
from codegen.llvm import kernels as K
from codegen.llvm.dropout import emit_dropout_mask
from codegen.llvm.gemm import gemm_shape, split_axis
from codegen.llvm.gemm_bf16 import gemm_emitter
from codegen.llvm.irutil import F32, I8, I64, PTR, declare, gep, i64, kernel_function
from codegen.llvm.sharing import kernel_signature
from codegen.llvm.target import Target
from mlpc.ir import Graph, Value
from passes.memory import MemoryPlan
from passes.plan import FusionPlan, Kernel


@dataclass
class KernelInfo:
    name: str
    kind: str
    threaded: bool
    detail: str = ""
    code: str = ""  # the function holding this kernel's code: its own name, or an earlier kernel's (shared)


@dataclass
class StepModule:
    module: ir.Module
    input_names: list[str]
    kernels: list[KernelInfo] = field(default_factory=list)
    threads: int = 1


STEP_MIN_WORK = 30e6  # flop-equivalents: below this a step runs on the calling thread only


def step_work(plan: FusionPlan) -> float:
    """Rough work of one step: gemm flops plus ~8 flop-equivalents per streamed element."""
    work = 0.0
    for k in plan.kernels:
        for i in k.ops:
            op = plan.graph.ops[i]
            if op.name == "matmul":
                a = op.operands[0].shape
                work += 2.0 * op.result.type.size * (a[0] if op.attrs["transpose_a"] else a[1])
            else:
                work += 8.0 * max(r.type.size for r in op.results) if op.results else 0.0
    return work


def kernel_threading(plan: FusionPlan, k: Kernel, target: Target, small_step: bool = False) -> tuple[bool, str]:
    """Whether kernel k splits across threads, and how (for gemm: 'n', 'm' or 'none'). Waking
    workers costs microseconds (milliseconds on an oversubscribed machine), so a step with little
    work in total (small batches, small models) keeps every kernel on the calling thread."""
    ops = [plan.graph.ops[i] for i in k.ops]
    nt = 1 if small_step else target.threads
    if k.kind == "gemm":
        axis = split_axis(gemm_shape(ops[0], target.lanes, target.precision == "bf16"), nt, bool(k.colsums))
        return axis != "none", axis
    if k.kind == "elementwise":
        return K.elementwise_threaded(ops, nt), ""
    if k.kind == "optimizer":
        return K.optimizer_threaded(ops, nt), ""
    return False, ""


def scratch_needs(plan: FusionPlan, target: Target) -> dict[int, int]:
    out = {}
    for k in plan.kernels:
        if k.kind == "solve":
            out[k.index] = linalg.solve_scratch_bytes(plan.graph.ops[k.ops[0]])
        if k.kind == "gemm":
            s = gemm_shape(plan.graph.ops[k.ops[0]], target.lanes, target.precision == "bf16")
            out[k.index] = s.scratch_bytes(target.threads)
    return out


def build_module(plan: FusionPlan, mem: MemoryPlan, target: Target, name: str = "mlpc",
                 labels: list[tuple[str, int]] | None = None, profile: bool = PROFILE,
                 share: bool = True) -> StepModule:
    """`labels`: (data input, class count) pairs that mlpc_step range-checks before touching any
    state; it returns 1 (and does nothing) if a label is out of range, else 0. Kernels of equal
    signature call one function (sharing.py); `share=False` gives every kernel its own (for tests)."""
    g: Graph = plan.graph
    mod = ir.Module(name=name)
    mod.triple = target.triple
    input_names = [i.name for i in g.inputs]
    arg_index = {n: 1 + j for j, n in enumerate(input_names)}
    small = step_work(plan) < STEP_MIN_WORK
    threading = {k.index: kernel_threading(plan, k, target, small) for k in plan.kernels}
    nt = target.threads if any(t for t, _ in threading.values()) else 1
    step = StepModule(mod, input_names, threads=nt)

    # ---- kernels: one function per distinct signature (sharing.py) ------------------------------
    kfuncs: list[tuple[ir.Function, list[tuple], Kernel]] = []
    shared: dict[tuple, tuple[ir.Function, str]] = {}
    parts: dict | None = {} if share else None  # shared parts of kernels (sharing.call_shared); None: inline
    for k in plan.kernels:
        ops = [g.ops[i] for i in k.ops]
        keys, key_of = _kernel_keys(k, mem)
        sig = kernel_signature(k.kind, ops, k.outputs, k.colsums, key_of, len(keys), plan.constants,
                               threading[k.index], target.threads if threading[k.index][0] else 1,
                               k.index in mem.scratch)
        if share and sig in shared:
            fn, detail = shared[sig]
        else:
            fn, detail = _emit_kernel_function(mod, plan, k, ops, key_of, len(keys), k.index in mem.scratch,
                                               threading[k.index], target, parts)
            shared[sig] = (fn, detail)
        kfuncs.append((fn, keys, k))
        step.kernels.append(KernelInfo(k.name, k.kind, threading[k.index][0], detail, fn.name))

    # ---- copies back into state buffers whose in-place update was unsafe -----------------------
    barrier_fn = threads.barrier(mod) if nt > 1 else None

    body = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, I64, PTR]), "mlpc_body")
    body.linkage = "internal"
    body.attributes.add("noinline")  # only calls and barriers: codegen at -O0 is as fast to run, and
    body.attributes.add("optnone")   # much faster to compile (one long block of calls)
    b = ir.IRBuilder(body.append_basic_block("entry"))
    args, tid, bar = body.args
    arena = b.load(gep(b, PTR, args, 0), typ=PTR)
    ext_ptr: dict[str, ir.Value] = {}
    for n, j in arg_index.items():
        ext_ptr[n] = b.load(gep(b, PTR, args, j), typ=PTR)

    def key_ptr(key: tuple) -> ir.Value:
        if key[0] == "ext":
            return ext_ptr[key[1]]
        return gep(b, I8, arena, key[1])
    prof = None
    cycles = declare(mod, "llvm.readcyclecounter", I64, [])
    if profile:  # cycles per kernel on thread 0 in global `mlpc_prof`; `mlpc_cycles()` reads the counter
        prof = ir.GlobalVariable(mod, ir.ArrayType(I64, len(kfuncs)), "mlpc_prof")
        prof.initializer = ir.Constant(ir.ArrayType(I64, len(kfuncs)), [0] * len(kfuncs))
        cfn = ir.Function(mod, ir.FunctionType(I64, []), "mlpc_cycles")
        cb = ir.IRBuilder(cfn.append_basic_block("entry"))
        cb.ret(cb.call(cycles, []))
    dirty_any = False      # some kernel ran since the last barrier
    dirty_multi = False    # a split kernel ran since the last barrier
    is_t0 = b.icmp_signed("==", tid, i64(0))
    for fn, keys, k in kfuncs:
        threaded = threading[k.index][0]
        if barrier_fn is not None and ((threaded and dirty_any) or (not threaded and dirty_multi)):
            b.call(barrier_fn, [bar, i64(nt)])
            dirty_any = dirty_multi = False
        call_args = [key_ptr(key) for key in keys] + [tid]
        t_start = b.call(cycles, []) if prof is not None else None
        if prof is not None and barrier_fn is not None:  # profiling: the timed span holds all threads' work
            b.call(barrier_fn, [bar, i64(nt)])
        if threaded or nt == 1:
            b.call(fn, call_args)
        else:
            with b.if_then(is_t0):
                b.call(fn, call_args)
        if prof is not None and t_start is not None:
            if barrier_fn is not None:
                b.call(barrier_fn, [bar, i64(nt)])
            with b.if_then(is_t0):
                slot = b.gep(prof, [i64(0), i64(k.index)], inbounds=True)
                b.store(b.add(b.load(slot), b.sub(b.call(cycles, []), t_start)), slot)
        dirty_any = True
        dirty_multi = dirty_multi or threaded
    if mem.copy_back:
        if barrier_fn is not None and dirty_multi:
            b.call(barrier_fn, [bar, i64(nt)])
        with b.if_then(is_t0):
            for v, name in mem.copy_back:
                src_slot = mem.slots[v]
                src = ext_ptr[src_slot.external] if src_slot.external else gep(b, I8, arena, src_slot.offset)
                memcpy = declare(mod, "llvm.memcpy.p0.p0.i64", ir.VoidType(), [PTR, PTR, I64, ir.IntType(1)])
                b.call(memcpy, [ext_ptr[name], src, i64(v.type.nbytes), ir.Constant(ir.IntType(1), 0)])
    b.ret_void()

    checks = [(arg_index[n], g.input(n).value.type.size, c) for n, c in (labels or [])]
    threads.step_function(mod, body, nt, target, checks)
    return step


def _kernel_keys(k: Kernel, mem: MemoryPlan) -> tuple[list[tuple], dict[Value, int]]:
    """The kernel's pointer arguments (distinct buffers it touches, then its scratch) and each value's one."""
    touched: list[Value] = list(k.inputs) + list(k.outputs)
    for cs in k.colsums:
        if cs.result not in touched:
            touched.append(cs.result)
    keys: list[tuple] = []
    key_of: dict[Value, int] = {}
    for v in touched:
        s = mem.slots.get(v)
        if s is None:
            continue
        key = ("ext", s.external) if s.external else ("arena", s.offset)
        if key not in keys:
            keys.append(key)
        key_of[v] = keys.index(key)
    scratch_off = mem.scratch.get(k.index)
    if scratch_off is not None:
        keys.append(("arena", scratch_off))
    return keys, key_of


def _emit_kernel_function(mod: ir.Module, plan: FusionPlan, k: Kernel, ops: list, key_of: dict[Value, int],
                          nkeys: int, has_scratch: bool, threading: tuple[bool, str],
                          target: Target, parts: dict | None) -> tuple[ir.Function, str]:
    """`void k(ptr noalias x nkeys, i64 tid)`: kernel k's body, named after k, and a line describing it."""
    fn = kernel_function(mod, k.name, nkeys)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    threaded, axis = threading
    knt = target.threads if threaded else 1

    def ptr(v: Value) -> ir.Value:
        if v not in key_of:
            raise KeyError(f"kernel has no buffer for {v}")
        return fn.args[key_of[v]]
    ctx = K.KCtx(b, ptr, plan.constants, fn.args[-1], knt, fn.args[nkeys - 1] if has_scratch else None,
                 target.lanes, parts)
    detail = _emit_kernel(ctx, k, ops, axis, target)
    b.ret_void()
    if k.kind == "optimizer" and parts is not None:  # a block of calls to shared update loops (as mlpc_body)
        fn.attributes.add("optnone")
    return fn, detail


def _emit_kernel(c: K.KCtx, k: Kernel, ops: list, axis: str, target: Target) -> str:
    if k.kind == "gemm":
        s = gemm_shape(ops[0], target.lanes, target.precision == "bf16")
        gemm_emitter(target, c.b, ops, k.colsums, k.outputs, c.ptr, c.consts, target.lanes, c.tid, c.nt, c.scratch,
                     axis).emit()
        epi = [o.name for o in ops[1:] if o not in k.colsums]
        return (f"gemm M={s.m} N={s.n} K={s.k} ta={int(s.ta)} tb={int(s.tb)} tile={s.mr}x{s.nr} "
                f"split={axis} epilogue=[{' '.join(epi)}] colsums={len(k.colsums)}"
                + (f" bf16={'dpbf16ps' if target.bf16_native else 'fma'}" if s.bf16 else ""))
    if k.kind == "elementwise":
        K.emit_elementwise(c, ops, k.outputs)
        return f"elementwise x{len(ops)} {ops[-1].results[0].type}"
    if k.kind == "softmax_ce":
        K.emit_softmax_ce(c, [o for o in ops if o not in k.colsums], k.colsums)
        return f"softmax_ce {' '.join(o.name for o in ops)}"
    if k.kind == "optimizer":
        K.emit_optimizer(c, ops, k.outputs)
        upd = [o for o in ops if o.name != "matmul"]
        rank_k = len(ops) - len(upd)
        return (f"optimizer x{len(upd)} ({sum(o.operands[0].type.size for o in upd)} params"
                f"{f', {rank_k} rank-k gradients recomputed' if rank_k else ''})")
    if k.kind == "reduce":
        K.emit_reduce(c, ops[0])
    elif k.kind == "rowwise":
        K.emit_rowwise(c, ops[0])
    elif k.kind == "mse":
        K.emit_mse(c, ops[0])
    elif k.kind == "transpose":
        K.emit_transpose(c, ops[0])
    elif k.kind == "fill":
        fill = {"eye": linalg.emit_eye, "dropout_mask": emit_dropout_mask}.get(ops[0].name, K.emit_fill)
        fill(c, ops[0])
    elif k.kind == "copy":
        linalg.emit_copy(c, ops[0])
    elif k.kind == "solve":
        linalg.emit_solve(c, ops[0])
    else:  # pragma: no cover - fusion only makes the kinds above
        raise ValueError(f"no emitter for kernel kind {k.kind}")
    return ops[0].name


__all__ = ["StepModule", "build_module", "F32"]
