"""Kernels of an exported library: the JIT's step modules, renamed, linked into one object file."""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm

from codegen.aot.spec import Loc, StepSpec
from codegen.llvm import step as llvm_step
from codegen.llvm.compile import optimize_and_emit
from codegen.llvm.target import Target, init_llvm
from mlpc.errors import MlpcError
from mlpc.ir import Graph

JIT_ENTRY = "mlpc_step"          # int (void **args): 0 ok, 1 bad label, 2 no worker threads
JIT_SHUTDOWN = "mlpc_shutdown"   # void (void): stops the step's worker pool


@dataclass
class StepModuleText:
    spec: StepSpec
    ir_text: str      # unoptimized LLVM IR of the step module, entry renamed to spec.symbol


def build_step(graph: Graph, kind: str, batch: int, symbol: str, target: Target) -> StepModuleText:
    """Fuse, plan and generate `graph` with the LLVM backend's step builder, and describe its results."""
    return _describe(graph, llvm_step.build_step(graph, target, "ahead-of-time export"), kind, batch, symbol)


def build_split_train_step(graph: Graph, batch: int, symbol: str, target: Target) -> list[StepModuleText]:
    """A train step with allreduce ops (the distribute pass) as two functions: the local half, whose memory
    plan puts the values to reduce in one region of its arena (the bucket NAME_set_allreduce's function
    gets), and the update half, which reads them there and runs in the scratch memory after it."""
    from passes.collective_split import split_at_collectives
    from passes.distribute import ROW_OFFSET

    split = split_at_collectives(graph)
    if split.carried or any(kind != "row_weighted_mean" for _name, kind in split.reduced):
        raise MlpcError("the allreduce hook supports steps whose update reads only the reduced loss and "
                        f"gradients; this one also carries {', '.join(split.carried) or 'other reductions'}")
    if any(i.name == ROW_OFFSET for i in split.local.inputs):
        raise MlpcError("the allreduce hook does not support dropout yet: the C API has no input for the "
                        "rank's global row offset that keys the masks (train it from Python: distributed=True)")
    built = llvm_step.build_step(split.local, target, "ahead-of-time export")
    bucket = built.mem.bucket
    if bucket is None:
        raise MlpcError("the memory plan could not put the gradients in one region of the arena")
    local = _describe(split.local, built, "train", batch, symbol, result=split.reduced[0][0])
    where = {o.name: built.mem.slots[o.value].offset for o in split.local.outputs}
    update = build_step(split.update, "update", batch, symbol + "_update", target)
    update.spec.arena_at = -(-built.mem.arena_bytes // 64) * 64
    update.spec.arena_inputs = {name: where[name] for name, _kind in split.reduced}
    local.spec.update = update.spec
    local.spec.bucket = (bucket[0], bucket[1] // 4)
    return [local, update]


def _describe(graph: Graph, built: llvm_step.BuiltStep, kind: str, batch: int, symbol: str,
              result: str | None = None) -> StepModuleText:
    mem, step = built.mem, built.step
    classes = dict(built.labels).get("y", 0) if kind == "train" else 0
    names = [i.name for i in graph.inputs]
    arg = {n: 1 + j for j, n in enumerate(names)}
    input_value = {i.name: i.value for i in graph.inputs}
    state_names = {i.name for i in graph.inputs if i.role != "data"}
    copied_in_kernel = {name for _v, name in mem.copy_back}

    def loc(value: object) -> Loc:
        slot = mem.slots[value]  # type: ignore[index]
        return Loc(arg[slot.external], 0) if slot.external is not None else Loc(0, slot.offset)

    result_name = result or ("loss" if kind in ("train", "update") else "logits")
    out: Loc | None = None
    for o in graph.outputs:
        if o.name == result_name:
            out = loc(o.value)
        elif o.name in state_names and not (o.name in mem.inplace or o.name in copied_in_kernel
                                            or o.value is input_value[o.name]):
            # the memory planner puts every new state value in place or copies it back in-kernel
            raise MlpcError(f"the memory plan leaves the new value of {o.name!r} outside its buffer; "
                            f"ahead-of-time export supports only in-place and copied-back state")
    if out is None:
        raise MlpcError(f"the {kind} graph has no output {result_name!r}")
    spec = StepSpec(kind, batch, symbol, names, mem.arena_bytes, out, classes, step.threads)
    return StepModuleText(spec, str(step.module))


def link_object(steps: list[StepModuleText], target: Target) -> tuple[bytes, str]:
    """One relocatable object with every step's entry point and pool shutdown (hidden) and its
    kernels (internal); also returns the optimized IR text."""
    init_llvm()
    linked: llvm.ModuleRef | None = None
    for s in steps:
        mod = llvm.parse_assembly(s.ir_text)
        for jit_name, aot_name in ((JIT_ENTRY, s.spec.symbol), (JIT_SHUTDOWN, s.spec.symbol + "_shutdown")):
            fn = mod.get_function(jit_name)
            fn.name = aot_name
            fn.visibility = "hidden"
        if linked is None:
            linked = mod
        else:
            linked.link_in(mod)
    assert linked is not None
    compiled = optimize_and_emit(str(linked), target, want_asm=False)
    return compiled.obj, compiled.ir_text
