"""LLVM driver: optimize a step module, emit object code and assembly, load code into the process."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import llvmlite.binding as llvm

from codegen.llvm.target import Target, init_llvm

ASM_EMITS = [0]  # assembly listings generated in this process (tests check that none is made unasked)


@dataclass
class CompiledObject:
    """Optimized IR text, a relocatable object (and its assembly only if asked) for one step module;
    `seconds`: time per phase (parse = parse + verify, optimize, codegen = object emission)."""

    ir_text: str
    asm_text: str
    obj: bytes
    seconds: dict[str, float] = field(default_factory=dict)


def optimize_and_emit(ir_text: str, target: Target, want_asm: bool = True) -> CompiledObject:
    init_llvm()
    t0 = time.perf_counter()
    mod = llvm.parse_assembly(ir_text)
    tm = target.machine()
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    t1 = time.perf_counter()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = False  # kernels are unrolled where it pays (microkernel); halves compile time
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    mpm.run(mod, pb)
    t2 = time.perf_counter()
    obj = tm.emit_object(mod)
    t3 = time.perf_counter()
    asm = _emit_asm(tm, mod) if want_asm else ""
    return CompiledObject(str(mod), asm, obj, {"llvm_parse": t1 - t0, "llvm_optimize": t2 - t1,
                                               "llvm_codegen": t3 - t2})


def _emit_asm(tm: llvm.TargetMachine, mod: llvm.ModuleRef) -> str:
    ASM_EMITS[0] += 1
    return tm.emit_assembly(mod)


def assembly_of(optimized_ir: str, target: Target) -> str:
    """The assembly of an already optimized module (its IR text): generated on demand, for `dump`
    and `report` only, since a step that runs never needs it (codegen runs again, no optimization)."""
    init_llvm()
    mod = llvm.parse_assembly(optimized_ir)
    tm = target.machine()
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    return _emit_asm(tm, mod)


class LoadedCode:
    """An MCJIT engine holding one object file; keep it alive while its function pointers are used."""

    def __init__(self, obj: bytes, target: Target) -> None:
        init_llvm()
        tm = target.machine()
        empty = llvm.parse_assembly("")
        empty.triple = target.triple
        empty.data_layout = str(tm.target_data)
        self.engine = llvm.create_mcjit_compiler(empty, tm)
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()
        self.address = self.engine.get_function_address("mlpc_step")
        self.shutdown_address = self.engine.get_function_address("mlpc_shutdown")
        if not self.address or not self.shutdown_address:
            raise RuntimeError("compiled object has no mlpc_step/mlpc_shutdown")


def split_functions_ir(ir_text: str) -> dict[str, str]:
    """`define ... @name(...) { ... }` blocks of an LLVM IR module, by function name."""
    out: dict[str, str] = {}
    for m in re.finditer(r"^define [^@]*@\"?([\w.$]+)\"?\(.*?^}\n", ir_text, re.S | re.M):
        out[m.group(1)] = m.group(0)
    return out


def split_functions_asm(asm_text: str) -> dict[str, str]:
    """Assembly per function (from its label to the next function's `.type` or `.size`)."""
    out: dict[str, str] = {}
    lines = asm_text.splitlines()
    cur: str | None = None
    buf: list[str] = []
    for line in lines:
        m = re.match(r"^([\w.$]+):\s*(#.*)?$", line)
        if m and not m.group(1).startswith(".L"):
            if cur is not None:
                out[cur] = "\n".join(buf) + "\n"
            cur, buf = m.group(1), [line]
            continue
        if cur is not None:
            if line.strip().startswith(".size") or line.strip().startswith(".Lfunc_end"):
                out[cur] = "\n".join(buf + [line]) + "\n"
                cur, buf = None, []
            else:
                buf.append(line)
    if cur is not None:
        out[cur] = "\n".join(buf) + "\n"
    return out
