"""LLVM driver: optimize a step module, emit object code and assembly, load code into the process."""

from __future__ import annotations

import re
from dataclasses import dataclass

import llvmlite.binding as llvm

from codegen.llvm.target import Target, init_llvm


@dataclass
class CompiledObject:
    """Optimized IR text, assembly text and a relocatable object for one step module."""

    ir_text: str
    asm_text: str
    obj: bytes


def optimize_and_emit(ir_text: str, target: Target, want_asm: bool = True) -> CompiledObject:
    init_llvm()
    mod = llvm.parse_assembly(ir_text)
    tm = target.machine()
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = False  # kernels are unrolled where it pays (microkernel); halves compile time
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    mpm.run(mod, pb)
    obj = tm.emit_object(mod)
    asm = tm.emit_assembly(mod) if want_asm else ""
    return CompiledObject(str(mod), asm, obj)


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
