"""Builds the LLVM module of one training step: one function per fused kernel, and `mlpc_step`.

`void mlpc_step(ptr args)`: args[0] is the arena, args[1 + i] the buffer of the graph's i-th input.
Threads: when some kernel is large enough to split (see gemm.split_axis and the kernels' size
thresholds), mlpc_step creates target.threads - 1 POSIX threads with pthread_create, every thread
runs the same kernel sequence (`mlpc_body`) on its share of the split kernels (single-thread kernels
run on thread 0 only), with a spin barrier between dependent kernels, and mlpc_step joins them. A
step whose kernels are all small (small batches) runs on the calling thread with no thread created.
Flush-to-zero: each thread sets MXCSR FTZ|DAZ for the step and restores the caller's MXCSR after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from llvmlite import ir

from mlpc.ir import Graph, Value
from passes.fusion import FusionPlan, Kernel
from passes.memory import MemoryPlan

from codegen.llvm import kernels as K
from codegen.llvm.gemm import GemmEmitter, gemm_shape, split_axis
from codegen.llvm.irutil import F32, I8, I32, I64, PTR, alloca_entry, declare, gep, i64
from codegen.llvm.target import Target

VERSION = "llvm-codegen-3"
PROFILE = bool(os.environ.get("MLPC_PROFILE_KERNELS"))


@dataclass
class KernelInfo:
    name: str
    kind: str
    threaded: bool
    detail: str = ""


@dataclass
class StepModule:
    module: ir.Module
    input_names: list[str]
    kernels: list[KernelInfo] = field(default_factory=list)
    threads: int = 1


def kernel_threading(plan: FusionPlan, k: Kernel, target: Target) -> tuple[bool, str]:
    """Whether kernel k splits across threads, and how (for gemm: 'n', 'm' or 'none')."""
    ops = [plan.graph.ops[i] for i in k.ops]
    nt = target.threads
    if k.kind == "gemm":
        axis = split_axis(gemm_shape(ops[0], target.lanes), nt, bool(k.colsums))
        return axis != "none", axis
    if k.kind == "elementwise":
        return K.elementwise_threaded(ops, nt), ""
    if k.kind == "optimizer":
        return K.optimizer_threaded(ops, nt), ""
    return False, ""


def scratch_needs(plan: FusionPlan, target: Target) -> dict[int, int]:
    out = {}
    for k in plan.kernels:
        if k.kind == "gemm":
            s = gemm_shape(plan.graph.ops[k.ops[0]], target.lanes)
            out[k.index] = s.scratch_bytes(target.threads)
    return out


def build_module(plan: FusionPlan, mem: MemoryPlan, target: Target, name: str = "mlpc") -> StepModule:
    g: Graph = plan.graph
    mod = ir.Module(name=name)
    mod.triple = target.triple
    input_names = [i.name for i in g.inputs]
    arg_index = {n: 1 + j for j, n in enumerate(input_names)}
    threading = {k.index: kernel_threading(plan, k, target) for k in plan.kernels}
    nt = target.threads if any(t for t, _ in threading.values()) else 1
    step = StepModule(mod, input_names, threads=nt)

    # ---- kernels ------------------------------------------------------------------------------
    kfuncs: list[tuple[ir.Function, list[tuple], Kernel]] = []
    for k in plan.kernels:
        ops = [g.ops[i] for i in k.ops]
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
        fty = ir.FunctionType(ir.VoidType(), [PTR] * len(keys) + [I64])
        fn = ir.Function(mod, fty, k.name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        for a in fn.args[:-1]:
            a.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        threaded, axis = threading[k.index]
        knt = target.threads if threaded else 1

        def ptr(v: Value, fn: ir.Function = fn, key_of: dict = key_of) -> ir.Value:
            if v not in key_of:
                raise KeyError(f"kernel has no buffer for {v}")
            return fn.args[key_of[v]]
        ctx = K.KCtx(b, ptr, plan.constants, fn.args[-1], knt,
                     fn.args[len(keys) - 1] if scratch_off is not None else None, target.lanes)
        detail = _emit_kernel(ctx, k, ops, axis, target)
        b.ret_void()
        kfuncs.append((fn, keys, k))
        step.kernels.append(KernelInfo(k.name, k.kind, threaded, detail))

    # ---- copies back into state buffers whose in-place update was unsafe -----------------------
    barrier_fn = _barrier(mod) if nt > 1 else None

    body = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, I64, PTR]), "mlpc_body")
    body.linkage = "internal"
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
    if PROFILE:
        prof = ir.GlobalVariable(mod, ir.ArrayType(I64, len(kfuncs)), "mlpc_prof")
        prof.initializer = ir.Constant(ir.ArrayType(I64, len(kfuncs)), [0] * len(kfuncs))
    cycles = declare(mod, "llvm.readcyclecounter", I64, [])
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
        if threaded or nt == 1:
            b.call(fn, call_args)
        else:
            with b.if_then(is_t0):
                b.call(fn, call_args)
        if prof is not None and t_start is not None:
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

    _step_and_workers(mod, body, nt, target)
    return step


def _emit_kernel(c: K.KCtx, k: Kernel, ops: list, axis: str, target: Target) -> str:
    if k.kind == "gemm":
        s = gemm_shape(ops[0], target.lanes)
        GemmEmitter(c.b, ops, k.colsums, k.outputs, c.ptr, c.consts, target.lanes, c.tid, c.nt, c.scratch,
                    axis).emit()
        epi = [o.name for o in ops[1:] if o not in k.colsums]
        return (f"gemm M={s.m} N={s.n} K={s.k} ta={int(s.ta)} tb={int(s.tb)} tile={s.mr}x{s.nr} "
                f"split={axis} epilogue=[{' '.join(epi)}] colsums={len(k.colsums)}")
    if k.kind == "elementwise":
        K.emit_elementwise(c, ops, k.outputs)
        return f"elementwise x{len(ops)} {ops[-1].results[0].type}"
    if k.kind == "softmax_ce":
        K.emit_softmax_ce(c, [o for o in ops if o not in k.colsums], k.colsums)
        return f"softmax_ce {' '.join(o.name for o in ops)}"
    if k.kind == "optimizer":
        K.emit_optimizer(c, ops, k.outputs)
        return f"optimizer x{len(ops)} ({sum(o.operands[0].type.size for o in ops)} params)"
    if k.kind == "reduce":
        K.emit_reduce(c, ops[0])
    elif k.kind == "rowwise":
        K.emit_rowwise(c, ops[0])
    elif k.kind == "mse":
        K.emit_mse(c, ops[0])
    elif k.kind == "transpose":
        K.emit_transpose(c, ops[0])
    elif k.kind == "fill":
        K.emit_fill(c, ops[0])
    else:  # pragma: no cover - fusion only makes the kinds above
        raise ValueError(f"no emitter for kernel kind {k.kind}")
    return ops[0].name


SPIN_ITERS = 4000


def _barrier(mod: ir.Module) -> ir.Function:
    """Counting barrier over i32 {count, generation, sleepers}: spin briefly with `pause`, then sleep
    on a futex (Linux) or sched_yield (elsewhere), so an oversubscribed machine does not livelock."""
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, I64]), "mlpc_barrier")
    fn.linkage = "internal"
    bar, nt = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    linux = "linux" in mod.triple and mod.triple.startswith("x86_64")
    count, gen, sleepers = bar, gep(b, I32, bar, 1), gep(b, I32, bar, 2)
    g0 = b.load_atomic(gen, "seq_cst", 4, typ=I32)
    old = b.atomic_rmw("add", count, ir.Constant(I32, 1), "seq_cst")
    last = b.icmp_signed("==", b.sext(old, I64), b.sub(nt, i64(1)))
    with b.if_else(last) as (then, otherwise):
        with then:
            b.atomic_rmw("xchg", count, ir.Constant(I32, 0), "seq_cst")
            b.atomic_rmw("add", gen, ir.Constant(I32, 1), "seq_cst")
            asleep = b.load_atomic(sleepers, "seq_cst", 4, typ=I32)
            with b.if_then(b.icmp_signed("!=", asleep, ir.Constant(I32, 0))):
                _wake(b, mod, gen, linux)
        with otherwise:
            spin = b.append_basic_block("spin")
            sleep = b.append_basic_block("sleep")
            done = b.append_basic_block("done")
            pre = b.block
            b.branch(spin)
            b.position_at_end(spin)
            n = b.phi(I32)
            n.add_incoming(ir.Constant(I32, 0), pre)
            if mod.triple.startswith("x86_64"):
                b.call(declare(mod, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
            g1 = b.load_atomic(gen, "seq_cst", 4, typ=I32)
            n1 = b.add(n, ir.Constant(I32, 1))
            n.add_incoming(n1, b.block)
            same = b.icmp_signed("==", g1, g0)
            keep = b.and_(same, b.icmp_signed("<", n1, ir.Constant(I32, SPIN_ITERS)))
            b.cbranch(keep, spin, sleep)
            b.position_at_end(sleep)
            b.atomic_rmw("add", sleepers, ir.Constant(I32, 1), "seq_cst")
            wait = b.append_basic_block("wait")
            b.branch(wait)
            b.position_at_end(wait)
            g2 = b.load_atomic(gen, "seq_cst", 4, typ=I32)
            still = b.icmp_signed("==", g2, g0)
            wait_body = b.append_basic_block("wait.body")
            out = b.append_basic_block("wait.out")
            b.cbranch(still, wait_body, out)
            b.position_at_end(wait_body)
            _sleep(b, mod, gen, g0, linux)
            b.branch(wait)
            b.position_at_end(out)
            b.atomic_rmw("sub", sleepers, ir.Constant(I32, 1), "seq_cst")
            b.branch(done)
            b.position_at_end(done)
    b.ret_void()
    return fn


def _syscall(mod: ir.Module) -> ir.Function:
    fn = mod.globals.get("syscall")
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    return fn


FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE, SYS_FUTEX = 128, 129, 202


def _sleep(b: ir.IRBuilder, mod: ir.Module, addr: ir.Value, expected: ir.Value, linux: bool) -> None:
    if linux:
        b.call(_syscall(mod), [i64(SYS_FUTEX), addr, ir.Constant(I32, FUTEX_WAIT_PRIVATE), expected,
                               ir.Constant(PTR, None), ir.Constant(PTR, None), ir.Constant(I32, 0)])
    else:
        b.call(declare(mod, "sched_yield", I32, []), [])


def _wake(b: ir.IRBuilder, mod: ir.Module, addr: ir.Value, linux: bool) -> None:
    if linux:
        b.call(_syscall(mod), [i64(SYS_FUTEX), addr, ir.Constant(I32, FUTEX_WAKE_PRIVATE),
                               ir.Constant(I32, 0x7FFFFFFF), ir.Constant(PTR, None), ir.Constant(PTR, None),
                               ir.Constant(I32, 0)])


def _set_ftz(b: ir.IRBuilder, mod: ir.Module, target: Target) -> ir.Value | None:
    if not (target.ftz and target.is_x86):
        return None
    st = declare(mod, "llvm.x86.sse.stmxcsr", ir.VoidType(), [PTR])
    ld = declare(mod, "llvm.x86.sse.ldmxcsr", ir.VoidType(), [PTR])
    saved = alloca_entry(b, I32, "mxcsr")
    new = alloca_entry(b, I32, "mxcsr_ftz")
    b.call(st, [saved])
    b.store(b.or_(b.load(saved, typ=I32), ir.Constant(I32, 0x8040)), new)
    b.call(ld, [new])
    return saved


def _restore_ftz(b: ir.IRBuilder, mod: ir.Module, saved: ir.Value | None) -> None:
    if saved is not None:
        b.call(declare(mod, "llvm.x86.sse.ldmxcsr", ir.VoidType(), [PTR]), [saved])


def _step_and_workers(mod: ir.Module, body: ir.Function, nt: int, target: Target) -> None:
    step = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR]), "mlpc_step")
    b = ir.IRBuilder(step.append_basic_block("entry"))
    saved = _set_ftz(b, mod, target)
    if nt == 1:
        b.call(body, [step.args[0], i64(0), ir.Constant(PTR, None)])
        _restore_ftz(b, mod, saved)
        b.ret_void()
        return
    # worker: ctx = i64[3] {args, tid, barrier}
    worker = ir.Function(mod, ir.FunctionType(PTR, [PTR]), "mlpc_worker")
    worker.linkage = "internal"
    wb = ir.IRBuilder(worker.append_basic_block("entry"))
    ctx = worker.args[0]
    wsaved = _set_ftz(wb, mod, target)
    wargs = wb.inttoptr(wb.load(gep(wb, I64, ctx, 0), typ=I64), PTR)
    wtid = wb.load(gep(wb, I64, ctx, 1), typ=I64)
    wbar = wb.inttoptr(wb.load(gep(wb, I64, ctx, 2), typ=I64), PTR)
    wb.call(body, [wargs, wtid, wbar])
    _restore_ftz(wb, mod, wsaved)
    wb.ret(ir.Constant(PTR, None))

    create = declare(mod, "pthread_create", I32, [PTR, PTR, PTR, PTR])
    join = declare(mod, "pthread_join", I32, [I64, PTR])
    bar = b.alloca(I32, size=16, name="barrier")
    for n in range(16):
        b.store(ir.Constant(I32, 0), gep(b, I32, bar, n))
    handles = b.alloca(I64, size=nt, name="threads")
    ctxs = b.alloca(I64, size=3 * nt, name="ctxs")
    for t in range(1, nt):
        b.store(b.ptrtoint(step.args[0], I64), gep(b, I64, ctxs, 3 * t))
        b.store(i64(t), gep(b, I64, ctxs, 3 * t + 1))
        b.store(b.ptrtoint(bar, I64), gep(b, I64, ctxs, 3 * t + 2))
        b.call(create, [gep(b, I64, handles, t), ir.Constant(PTR, None), worker, gep(b, I64, ctxs, 3 * t)])
    b.call(body, [step.args[0], i64(0), bar])
    for t in range(1, nt):
        b.call(join, [b.load(gep(b, I64, handles, t), typ=I64), ir.Constant(PTR, None)])
    _restore_ftz(b, mod, saved)
    b.ret_void()


__all__ = ["StepModule", "build_module", "VERSION", "F32"]
