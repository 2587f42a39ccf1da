"""The measuring kernels of runtime/machine_peaks.py: FMA chains (fp32, bf16 dot products), streaming reads and
copies, and the cycle counter, as LLVM IR compiled for the host and timed through ctypes."""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any, Callable, Sequence

ACCUMULATORS = 16  # independent chains: more than FMA latency x FMA pipes on any current x86 core
STREAMS = 8        # vectors loaded per loop iteration by the bandwidth kernels


def fma_ir(lanes: int) -> str:
    """`void fma_loop(i64 n, float* io)`: ACCUMULATORS chains acc = fma(acc, b, a), n times."""
    vt = f"<{lanes} x float>"
    call = f"call {vt} @llvm.fma.v{lanes}f32({vt} %acc{{k}}, {vt} %b, {vt} %a)"
    return _chain_ir("fma_loop", f"declare {vt} @llvm.fma.v{lanes}f32({vt}, {vt}, {vt})", vt, vt, call)


def bf16_ir() -> str:
    """`void bf16_loop(i64 n, float* io)`: ACCUMULATORS chains of VDPBF16PS (16 fp32 lanes, each adding two
    bf16 products per instruction), n times."""
    vt, bt = "<16 x float>", "<32 x bfloat>"
    call = f"call {vt} @llvm.x86.avx512bf16.dpbf16ps.512({vt} %acc{{k}}, {bt} %b, {bt} %b)"
    decl = f"declare {vt} @llvm.x86.avx512bf16.dpbf16ps.512({vt}, {bt}, {bt})"
    return _chain_ir("bf16_loop", decl, vt, bt, call)


def _chain_ir(name: str, decl: str, vt: str, bt: str, call: str) -> str:
    lines = [decl, f"define void @{name}(i64 %n, float* %io) {{", "entry:",
             f"  %p = bitcast float* %io to {vt}*", f"  %a = load {vt}, {vt}* %p, align 4",
             f"  %pb = getelementptr {vt}, {vt}* %p, i64 1", f"  %pbb = bitcast {vt}* %pb to {bt}*",
             f"  %b = load {bt}, {bt}* %pbb, align 4", "  br label %loop", "loop:",
             "  %i = phi i64 [0, %entry], [%i1, %loop]"]
    lines += [f"  %acc{k} = phi {vt} [%a, %entry], [%n{k}, %loop]" for k in range(ACCUMULATORS)]
    lines += [f"  %n{k} = " + call.format(k=k) for k in range(ACCUMULATORS)]
    lines += ["  %i1 = add i64 %i, 1", "  %c = icmp ult i64 %i1, %n", "  br i1 %c, label %loop, label %done",
              "done:"]
    total = "%n0"
    for k in range(1, ACCUMULATORS):
        lines.append(f"  %s{k} = fadd {vt} {total}, %n{k}")
        total = f"%s{k}"
    lines += [f"  store {vt} {total}, {vt}* %p, align 4", "  ret void", "}"]
    return "\n".join(lines) + "\n"


def stream_ir(lanes: int) -> str:
    """`float bw_read(float* p, i64 nvec, i64 reps)` sums nvec vectors reps times (STREAMS accumulators);
    `void bw_copy(float* dst, float* src, i64 nvec, i64 reps)` copies nvec vectors reps times. nvec is a
    multiple of STREAMS; `void bw_triad(float* d, float* s, float* t, i64 nvec, i64 reps)` sets d = s + t
    (two reads and a write per element: what a CPU with two load ports and one store port streams fastest);
    `void bw_fill(float* d, i64 nvec, i64 reps)` only stores. Buffers are 64-byte aligned."""
    vt = f"<{lanes} x float>"
    zero = "zeroinitializer"
    read = ["define float @bw_read(float* %p, i64 %nvec, i64 %reps) {", "entry:",
            f"  %vp = bitcast float* %p to {vt}*", "  br label %outer", "outer:",
            "  %r = phi i64 [0, %entry], [%r1, %latch]"]
    read += [f"  %acc{k} = phi {vt} [{zero}, %entry], [%n{k}, %latch]" for k in range(STREAMS)]
    read += ["  br label %inner", "inner:", "  %i = phi i64 [0, %outer], [%i1, %inner]"]
    read += [f"  %c{k} = phi {vt} [%acc{k}, %outer], [%n{k}, %inner]" for k in range(STREAMS)]
    for k in range(STREAMS):
        read += [f"  %j{k} = add i64 %i, {k}", f"  %q{k} = getelementptr {vt}, {vt}* %vp, i64 %j{k}",
                 f"  %v{k} = load {vt}, {vt}* %q{k}, align 64", f"  %n{k} = fadd {vt} %c{k}, %v{k}"]
    read += [f"  %i1 = add i64 %i, {STREAMS}", "  %more = icmp ult i64 %i1, %nvec",
             "  br i1 %more, label %inner, label %latch", "latch:", "  %r1 = add i64 %r, 1",
             "  %again = icmp ult i64 %r1, %reps", "  br i1 %again, label %outer, label %done", "done:"]
    total = "%n0"
    for k in range(1, STREAMS):
        read.append(f"  %s{k} = fadd {vt} {total}, %n{k}")
        total = f"%s{k}"
    read += [f"  %x = extractelement {vt} {total}, i32 0", "  ret float %x", "}"]
    copy = ["define void @bw_copy(float* %d, float* %s, i64 %nvec, i64 %reps) {", "entry:",
            f"  %dp = bitcast float* %d to {vt}*", f"  %sp = bitcast float* %s to {vt}*", "  br label %outer",
            "outer:", "  %r = phi i64 [0, %entry], [%r1, %latch]", "  br label %inner", "inner:",
            "  %i = phi i64 [0, %outer], [%i1, %inner]"]
    for k in range(STREAMS):
        copy += [f"  %j{k} = add i64 %i, {k}", f"  %a{k} = getelementptr {vt}, {vt}* %sp, i64 %j{k}",
                 f"  %v{k} = load {vt}, {vt}* %a{k}, align 64",
                 f"  %b{k} = getelementptr {vt}, {vt}* %dp, i64 %j{k}", f"  store {vt} %v{k}, {vt}* %b{k}, align 64"]
    copy += [f"  %i1 = add i64 %i, {STREAMS}", "  %more = icmp ult i64 %i1, %nvec",
             "  br i1 %more, label %inner, label %latch", "latch:", "  %r1 = add i64 %r, 1",
             "  %again = icmp ult i64 %r1, %reps", "  br i1 %again, label %outer, label %done", "done:",
             "  ret void", "}"]
    triad = ["define void @bw_triad(float* %d, float* %s, float* %t, i64 %nvec, i64 %reps) {", "entry:",
             f"  %dp = bitcast float* %d to {vt}*", f"  %sp = bitcast float* %s to {vt}*",
             f"  %tp = bitcast float* %t to {vt}*", "  br label %outer",
             "outer:", "  %r = phi i64 [0, %entry], [%r1, %latch]", "  br label %inner", "inner:",
             "  %i = phi i64 [0, %outer], [%i1, %inner]"]
    for k in range(STREAMS):
        triad += [f"  %j{k} = add i64 %i, {k}", f"  %a{k} = getelementptr {vt}, {vt}* %sp, i64 %j{k}",
                  f"  %v{k} = load {vt}, {vt}* %a{k}, align 64", f"  %c{k} = getelementptr {vt}, {vt}* %tp, i64 %j{k}",
                  f"  %w{k} = load {vt}, {vt}* %c{k}, align 64", f"  %x{k} = fadd {vt} %v{k}, %w{k}",
                  f"  %b{k} = getelementptr {vt}, {vt}* %dp, i64 %j{k}", f"  store {vt} %x{k}, {vt}* %b{k}, align 64"]
    triad += copy[-10:]
    fill = ["define void @bw_fill(float* %d, i64 %nvec, i64 %reps) {", "entry:", f"  %dp = bitcast float* %d to {vt}*",
            "  br label %outer", "outer:", "  %r = phi i64 [0, %entry], [%r1, %latch]", "  br label %inner", "inner:",
            "  %i = phi i64 [0, %outer], [%i1, %inner]"]
    for k in range(STREAMS):
        fill += [f"  %j{k} = add i64 %i, {k}", f"  %b{k} = getelementptr {vt}, {vt}* %dp, i64 %j{k}",
                 f"  store {vt} <{', '.join(['float 1.0'] * lanes)}>, {vt}* %b{k}, align 64"]
    fill += copy[-10:]
    tsc = ["declare i64 @llvm.readcyclecounter()", "define i64 @tsc() {",
           "  %c = call i64 @llvm.readcyclecounter()", "  ret i64 %c", "}"]
    return "\n".join(read + copy + triad + fill + tsc) + "\n"


class Kernels:
    """The measuring kernels, compiled once for `target` (codegen.llvm.target.Target)."""

    def __init__(self, target: Any) -> None:
        import llvmlite.binding as llvm

        self.lanes = target.lanes
        self.has_bf16 = target.is_x86 and "+avx512bf16" in target.features.split(",")
        text = fma_ir(self.lanes) + stream_ir(self.lanes) + (bf16_ir() if self.has_bf16 else "")
        mod = llvm.parse_assembly(text)
        mod.verify()
        self.engine = llvm.create_mcjit_compiler(mod, target.machine())
        self.engine.finalize_object()
        addr = self.engine.get_function_address
        self.fma = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)(addr("fma_loop"))
        self.bf16 = (ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)(addr("bf16_loop"))
                     if self.has_bf16 else None)
        self.read = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(addr("bw_read"))
        self.copy = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64)(addr("bw_copy"))
        self.triad = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                      ctypes.c_int64)(addr("bw_triad"))
        self.fill = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(addr("bw_fill"))
        self.tsc = ctypes.CFUNCTYPE(ctypes.c_int64)(addr("tsc"))


def timed(fn: Callable[[], Any]) -> float:
    """Seconds of one call (ctypes releases the GIL during it)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_together(fns: Sequence[Callable[..., Any]]) -> float:
    """Seconds for len(fns) threads, started together, to finish one call each."""
    barrier = threading.Barrier(len(fns) + 1)

    def work(fn: Callable[[], Any]) -> None:
        barrier.wait()
        fn()

    pool = [threading.Thread(target=work, args=(f,)) for f in fns]
    for t in pool:
        t.start()
    start = time.perf_counter()
    barrier.wait()
    for t in pool:
        t.join()
    return time.perf_counter() - start
