"""Kernel signatures: fused kernels whose generated bodies are identical up to their buffer pointers.

A kernel's LLVM function is a pure function of what its emitter reads: the kernel kind, its ops (names,
attributes, result types), how each operand reaches the kernel (the result of an earlier op of the
kernel, an inlined scalar constant, or the i-th pointer argument), which values it stores (outputs,
column sums), its thread split and whether it has scratch. Buffer *addresses* (arena offsets, which
input buffer) are arguments, not part of the body. Two kernels with equal signatures therefore get the
same code, and the step module emits one function for both: a depth-50 MLP's 48 identical hidden
layers share one forward gemm, one backward-data gemm and one weight-gradient gemm, so LLVM optimizes
and compiles each distinct kernel once. Shapes stay compile-time constants inside the shared body
(equal signatures have equal shapes), so vectorization and tiling are unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

from mlpc.ir import Op, Value
from mlpc.printer import format_attrs


def kernel_signature(kind: str, ops: list[Op], outputs: list[Value], colsums: list[Op], key_of: dict[Value, int],
                     nkeys: int, consts: dict[Value, float], threading: tuple[bool, str], nt: int,
                     has_scratch: bool) -> tuple[Any, ...]:
    """A hashable description of everything the kernel emitters read (see the module docstring)."""
    local: dict[Value, tuple[int, int]] = {}
    for j, op in enumerate(ops):
        for r, v in enumerate(op.results):
            local[v] = (j, r)

    def ref(v: Value) -> tuple[Any, ...]:
        const = repr(consts[v]) if v in consts else None
        return local.get(v), key_of.get(v), const, str(v.type)

    def describe(op: Op) -> tuple[Any, ...]:
        return (op.name, format_attrs(op.attrs), tuple(ref(v) for v in op.operands),
                tuple(ref(v) for v in op.results))

    body = tuple(describe(op) for op in ops)
    op_pos = {id(op): j for j, op in enumerate(ops)}
    sums = tuple(op_pos[id(cs)] if id(cs) in op_pos else describe(cs) for cs in colsums)
    return (kind, body, tuple(ref(v) for v in outputs), sums, nkeys, threading, nt, has_scratch)


def call_shared(c: Any, tag: str, ops: list[Op], outputs: list[Value], emit: Callable[[Any], None]) -> None:
    """Emit `emit(ctx)` (code for `ops` that reads and writes buffers only through `ctx`) as a call to a
    function shared by every part of the module with the same signature: in the optimizer kernel, one
    update loop per distinct parameter shape and rule instead of one per parameter. `c` is the
    caller's KCtx; the function gets the distinct buffers the ops touch (in first-use order) and tid."""
    from llvmlite import ir

    from codegen.llvm.irutil import kernel_function

    if c.shared is None:
        emit(c)
        return
    produced = {v for op in ops for v in op.results}
    used = [v for op in ops for v in op.operands if v not in produced] + [v for v in outputs if v in produced]
    ptrs: list[ir.Value] = []
    key_of: dict[Value, int] = {}
    for v in used:
        if v in c.consts or v in key_of:
            continue
        try:
            p = c.ptr(v)
        except KeyError:  # not read by the code (it would raise the same error there)
            continue
        if not any(p is q for q in ptrs):
            ptrs.append(p)
        key_of[v] = next(j for j, q in enumerate(ptrs) if q is p)
    sig = (tag, kernel_signature(tag, ops, [v for v in outputs if v in produced], [], key_of, len(ptrs), c.consts,
                                 (c.nt > 1, ""), c.nt, False), c.lanes)
    fn = c.shared.get(sig)
    if fn is None:
        mod = c.b.module
        fn = kernel_function(mod, mod.get_unique_name(f"{c.b.function.name}_{tag}"), len(ptrs))
        b = ir.IRBuilder(fn.append_basic_block("entry"))

        def ptr(v: Value) -> ir.Value:
            if v not in key_of:
                raise KeyError(f"shared {tag} code has no buffer for {v}")
            return fn.args[key_of[v]]
        emit(type(c)(b, ptr, c.consts, fn.args[-1], c.nt, None, c.lanes, c.shared))
        b.ret_void()
        c.shared[sig] = fn
    c.b.call(fn, ptrs + [c.tid])
