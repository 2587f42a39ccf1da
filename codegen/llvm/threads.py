"""Threads in generated code: a persistent worker pool, a spin-then-futex barrier, and `mlpc_step`.

`int mlpc_step(void **args)` is the one native call per training step. When the step has kernels
worth splitting, the first call starts target.threads - 1 POSIX threads (pthread_create) that live
in the module's pool; every step publishes `args`, bumps a generation counter (futex wake only if a
worker sleeps), runs thread 0's share of the kernel sequence and meets the workers at a final
barrier. Idle workers spin briefly with `pause` and then sleep on a futex, so an oversubscribed
machine does not livelock. A step lock (holding its owner's pid) serializes concurrent callers; after
fork a child steals a lock its parent's threads held, and a changed getpid() restarts the pool;
`void mlpc_shutdown(void)` stops and joins the workers (called before the code is freed).
Steps with only small kernels run on the calling thread and never start the pool.
Flush-to-zero: every thread runs kernels with MXCSR FTZ|DAZ set; the caller's MXCSR is restored.
"""

from __future__ import annotations

from llvmlite import ir

from codegen.llvm.irutil import I32, I64, PTR, alloca_entry, declare, gep, i64, loop
from codegen.llvm.target import Target

SPIN_ITERS = 4000
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE, SYS_FUTEX = 128, 129, 202
# int slots of the pool: 0..2 barrier {count, generation, sleepers}; then:
WORK_GEN, WORK_SLEEPERS, QUIT, LOCK = 16, 17, 18, 19
# i64 slots: args pointer, owner pid, then one pthread_t per thread
ARGS, PID, HANDLES = 0, 1, 2


def _linux(mod: ir.Module) -> bool:
    return "linux" in mod.triple and mod.triple.startswith("x86_64")


def _pause(b: ir.IRBuilder, mod: ir.Module) -> None:
    if mod.triple.startswith("x86_64"):
        b.call(declare(mod, "llvm.x86.sse2.pause", ir.VoidType(), []), [])


def _syscall(mod: ir.Module) -> ir.Function:
    fn = mod.globals.get("syscall")
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    return fn


def _sleep(b: ir.IRBuilder, mod: ir.Module, addr: ir.Value, expected: ir.Value) -> None:
    if _linux(mod):
        b.call(_syscall(mod), [i64(SYS_FUTEX), addr, ir.Constant(I32, FUTEX_WAIT_PRIVATE), expected,
                               ir.Constant(PTR, None), ir.Constant(PTR, None), ir.Constant(I32, 0)])
    else:
        b.call(declare(mod, "sched_yield", I32, []), [])


def _wake(b: ir.IRBuilder, mod: ir.Module, addr: ir.Value) -> None:
    if _linux(mod):
        b.call(_syscall(mod), [i64(SYS_FUTEX), addr, ir.Constant(I32, FUTEX_WAKE_PRIVATE),
                               ir.Constant(I32, 0x7FFFFFFF), ir.Constant(PTR, None), ir.Constant(PTR, None),
                               ir.Constant(I32, 0)])


def _wait_change(b: ir.IRBuilder, mod: ir.Module, addr: ir.Value, seen: ir.Value, sleepers: ir.Value) -> ir.Value:
    """Wait until *addr != seen: spin with pause, then sleep on the futex; returns the new value."""
    pre = b.block
    spin = b.append_basic_block("spin")
    sleep = b.append_basic_block("sleep")
    wait = b.append_basic_block("wait")
    wait_body = b.append_basic_block("wait.body")
    woke = b.append_basic_block("woke")
    done = b.append_basic_block("done")
    b.branch(spin)
    b.position_at_end(spin)
    n = b.phi(I32)
    n.add_incoming(ir.Constant(I32, 0), pre)
    _pause(b, mod)
    cur = b.load_atomic(addr, "seq_cst", 4, typ=I32)
    n1 = b.add(n, ir.Constant(I32, 1))
    n.add_incoming(n1, sleep)
    same = b.icmp_signed("==", cur, seen)
    b.cbranch(same, sleep, done)
    b.position_at_end(sleep)
    more = b.icmp_signed("<", n1, ir.Constant(I32, SPIN_ITERS))
    b.cbranch(more, spin, wait)
    b.position_at_end(wait)
    b.atomic_rmw("add", sleepers, ir.Constant(I32, 1), "seq_cst")
    b.branch(wait_body)
    b.position_at_end(wait_body)
    cur2 = b.load_atomic(addr, "seq_cst", 4, typ=I32)
    still = b.icmp_signed("==", cur2, seen)
    sleep_bb = b.append_basic_block("futex")
    b.cbranch(still, sleep_bb, woke)
    b.position_at_end(sleep_bb)
    _sleep(b, mod, addr, seen)
    b.branch(wait_body)
    b.position_at_end(woke)
    b.atomic_rmw("sub", sleepers, ir.Constant(I32, 1), "seq_cst")
    b.branch(done)
    b.position_at_end(done)
    return b.load_atomic(addr, "seq_cst", 4, typ=I32)


def barrier(mod: ir.Module) -> ir.Function:
    """Counting barrier over i32 {count, generation, sleepers}."""
    fn = mod.globals.get("mlpc_barrier")
    if fn is not None:
        return fn
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, I64]), "mlpc_barrier")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    bar, nt = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
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
                _wake(b, mod, gen)
        with otherwise:
            _wait_change(b, mod, gen, g0, sleepers)
    b.ret_void()
    return fn


def set_ftz(b: ir.IRBuilder, mod: ir.Module, target: Target) -> ir.Value | None:
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


def restore_ftz(b: ir.IRBuilder, mod: ir.Module, saved: ir.Value | None) -> None:
    if saved is not None:
        b.call(declare(mod, "llvm.x86.sse.ldmxcsr", ir.VoidType(), [PTR]), [saved])


def label_check(b: ir.IRBuilder, args: ir.Value, checks: list[tuple[int, int, int]]) -> None:
    """Return 1 from the step, before touching any state, if a label is outside [0, classes)."""
    for idx, size, classes in checks:
        p = b.load(gep(b, PTR, args, idx), typ=PTR)
        bad = alloca_entry(b, I32, "bad")
        b.store(ir.Constant(I32, 0), bad)
        with loop(b, 0, size, name="lab") as i:
            y = b.load(gep(b, I32, p, i), typ=I32)
            out = b.icmp_unsigned(">=", y, ir.Constant(I32, classes))  # negative -> huge unsigned
            b.store(b.or_(b.load(bad, typ=I32), b.zext(out, I32)), bad)
        with b.if_then(b.icmp_signed("!=", b.load(bad, typ=I32), ir.Constant(I32, 0)), likely=False):
            b.ret(ir.Constant(I32, 1))


def step_function(mod: ir.Module, body: ir.Function, nt: int, target: Target,
                  checks: list[tuple[int, int, int]]) -> None:
    """Define `int mlpc_step(void **args)` and `void mlpc_shutdown(void)`."""
    step = ir.Function(mod, ir.FunctionType(I32, [PTR]), "mlpc_step")
    shutdown = ir.Function(mod, ir.FunctionType(ir.VoidType(), []), "mlpc_shutdown")
    b = ir.IRBuilder(step.append_basic_block("entry"))
    label_check(b, step.args[0], checks)
    if nt == 1:
        saved = set_ftz(b, mod, target)
        b.call(body, [step.args[0], i64(0), ir.Constant(PTR, None)])
        restore_ftz(b, mod, saved)
        b.ret(ir.Constant(I32, 0))
        ir.IRBuilder(shutdown.append_basic_block("entry")).ret_void()
        return
    ints = ir.GlobalVariable(mod, ir.ArrayType(I32, 32), "mlpc_pool_ints")
    ints.linkage = "internal"
    ints.initializer = ir.Constant(ir.ArrayType(I32, 32), [0] * 32)
    longs = ir.GlobalVariable(mod, ir.ArrayType(I64, HANDLES + nt), "mlpc_pool_longs")
    longs.linkage = "internal"
    longs.initializer = ir.Constant(ir.ArrayType(I64, HANDLES + nt), [0] * (HANDLES + nt))

    def islot(bb: ir.IRBuilder, n: int) -> ir.Value:
        return bb.gep(ints, [i64(0), i64(n)], inbounds=True)

    def lslot(bb: ir.IRBuilder, n: int | ir.Value) -> ir.Value:
        return bb.gep(longs, [i64(0), i64(n) if isinstance(n, int) else n], inbounds=True)
    bar_fn = barrier(mod)
    getpid = declare(mod, "getpid", I32, [])
    create = declare(mod, "pthread_create", I32, [PTR, PTR, PTR, PTR])
    join = declare(mod, "pthread_join", I32, [I64, PTR])
    yield_fn = declare(mod, "sched_yield", I32, [])

    # worker(tid)
    worker = ir.Function(mod, ir.FunctionType(PTR, [PTR]), "mlpc_worker")
    worker.linkage = "internal"
    wb = ir.IRBuilder(worker.append_basic_block("entry"))
    wtid = wb.ptrtoint(worker.args[0], I64)
    set_ftz(wb, mod, target)  # thread-private, kept for the worker's life
    seen = alloca_entry(wb, I32, "seen")
    wb.store(ir.Constant(I32, 0), seen)
    head = wb.append_basic_block("work")
    wb.branch(head)
    wb.position_at_end(head)
    new = _wait_change(wb, mod, islot(wb, WORK_GEN), wb.load(seen, typ=I32), islot(wb, WORK_SLEEPERS))
    wb.store(new, seen)
    quit_ = wb.load_atomic(islot(wb, QUIT), "seq_cst", 4, typ=I32)
    with wb.if_then(wb.icmp_signed("!=", quit_, ir.Constant(I32, 0))):
        wb.ret(ir.Constant(PTR, None))
    args = wb.inttoptr(wb.load_atomic(lslot(wb, ARGS), "seq_cst", 8, typ=I64), PTR)
    bar = islot(wb, 0)
    wb.call(body, [args, wtid, bar])
    wb.call(bar_fn, [bar, i64(nt)])
    wb.branch(head)

    def lock(bb: ir.IRBuilder) -> None:
        """Take the step lock, which holds its owner's pid. A lock held by another pid was taken in the
        process this one was forked from, by a thread that does not exist here: it is stolen (fork safety)."""
        me = bb.call(getpid, [])
        spin = bb.append_basic_block("lock")
        busy = bb.append_basic_block("lock.busy")
        steal = bb.append_basic_block("lock.steal")
        wait = bb.append_basic_block("lock.wait")
        got = bb.append_basic_block("locked")
        bb.branch(spin)
        bb.position_at_end(spin)
        res = bb.cmpxchg(islot(bb, LOCK), ir.Constant(I32, 0), me, "seq_cst", "seq_cst")
        bb.cbranch(bb.extract_value(res, 1), got, busy)
        bb.position_at_end(busy)
        holder = bb.extract_value(res, 0)
        bb.cbranch(bb.icmp_signed("!=", holder, me), steal, wait)
        bb.position_at_end(steal)
        res2 = bb.cmpxchg(islot(bb, LOCK), holder, me, "seq_cst", "seq_cst")
        bb.cbranch(bb.extract_value(res2, 1), got, spin)
        bb.position_at_end(wait)
        bb.call(yield_fn, [])
        bb.branch(spin)
        bb.position_at_end(got)

    def unlock(bb: ir.IRBuilder) -> None:
        bb.atomic_rmw("xchg", islot(bb, LOCK), ir.Constant(I32, 0), "seq_cst")

    # step
    lock(b)
    pid = b.sext(b.call(getpid, []), I64)
    owner = b.load(lslot(b, PID), typ=I64)
    with b.if_then(b.icmp_signed("!=", pid, owner), likely=False):
        for n in range(16):
            b.store(ir.Constant(I32, 0), islot(b, n))
        for n in (WORK_GEN, WORK_SLEEPERS, QUIT):
            b.store(ir.Constant(I32, 0), islot(b, n))
        failed = alloca_entry(b, I32, "failed")
        b.store(ir.Constant(I32, 0), failed)
        for t in range(1, nt):
            rc = b.call(create, [lslot(b, HANDLES + t), ir.Constant(PTR, None), worker, b.inttoptr(i64(t), PTR)])
            b.store(b.or_(b.load(failed, typ=I32), rc), failed)
        with b.if_then(b.icmp_signed("!=", b.load(failed, typ=I32), ir.Constant(I32, 0)), likely=False):
            unlock(b)
            b.ret(ir.Constant(I32, 2))
        b.store(pid, lslot(b, PID))
    saved = set_ftz(b, mod, target)
    b.atomic_rmw("xchg", lslot(b, ARGS), b.ptrtoint(step.args[0], I64), "seq_cst")
    b.atomic_rmw("add", islot(b, WORK_GEN), ir.Constant(I32, 1), "seq_cst")
    sleepers = b.load_atomic(islot(b, WORK_SLEEPERS), "seq_cst", 4, typ=I32)
    with b.if_then(b.icmp_signed("!=", sleepers, ir.Constant(I32, 0))):
        _wake(b, mod, islot(b, WORK_GEN))
    bar = islot(b, 0)
    b.call(body, [step.args[0], i64(0), bar])
    b.call(bar_fn, [bar, i64(nt)])
    restore_ftz(b, mod, saved)
    unlock(b)
    b.ret(ir.Constant(I32, 0))

    # shutdown
    sb = ir.IRBuilder(shutdown.append_basic_block("entry"))
    lock(sb)
    spid = sb.sext(sb.call(getpid, []), I64)
    with sb.if_then(sb.icmp_signed("==", spid, sb.load(lslot(sb, PID), typ=I64))):
        sb.atomic_rmw("xchg", islot(sb, QUIT), ir.Constant(I32, 1), "seq_cst")
        sb.atomic_rmw("add", islot(sb, WORK_GEN), ir.Constant(I32, 1), "seq_cst")
        _wake(sb, mod, islot(sb, WORK_GEN))
        for t in range(1, nt):
            sb.call(join, [sb.load(lslot(sb, HANDLES + t), typ=I64), ir.Constant(PTR, None)])
        sb.store(i64(0), lslot(sb, PID))
    unlock(sb)
    sb.ret_void()
