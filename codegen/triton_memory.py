"""The Triton step's temporaries packed into one device pool by liveness (passes/memory.py's packer)."""

from __future__ import annotations

from codegen.kernel_plan import (
    EwiseKernel,
    Kernel,
    MatmulKernel,
    OptKernel,
    Plan,
    ReduceKernel,
    RowwiseKernel,
    SceKernel,
    reads,
)
from codegen.triton_dropout import DropoutKernel
from codegen.views import View
from passes.memory import MemoryPolicy, pack

# 256-byte slots (a full memory transaction, aligned for every dtype); new parameters and state
# are written in place through the optimizer's arenas, not by the memory planner.
GPU_MEMORY = MemoryPolicy("triton", align=256, inplace_state=False)


def writes(k: Kernel) -> list[View]:
    """Every view a kernel writes."""
    if isinstance(k, MatmulKernel):
        return [v for _, v in k.body.stores] + [p for _, p in k.colsums] + ([k.partial] if k.partial else [])
    if isinstance(k, EwiseKernel):
        return [v for _, v in k.body.stores]
    if isinstance(k, (ReduceKernel, RowwiseKernel)):
        return [k.out]
    if isinstance(k, SceKernel):
        return [v for v in (k.partial, k.grad) if v is not None]
    if isinstance(k, DropoutKernel):
        return [k.out]
    assert isinstance(k, OptKernel)
    return [k.p, *k.slots]


def plan_pool(plan: Plan, policy: MemoryPolicy = GPU_MEMORY) -> None:
    """Give every temporary buffer a byte offset in one pool (plan.pool_bytes): two temporaries share
    bytes only if no launch between the first and the last that touches one touches the other.
    Outputs and state copied back after the launches live to the end of the step."""
    n = len(plan.kernels)
    live: dict[str, tuple[int, int]] = {}
    for i, k in enumerate(plan.kernels):
        for v in reads(k) + writes(k):
            if v.buf is not None:
                lo, hi = live.get(v.buf, (i, i))
                live[v.buf] = (min(lo, i), max(hi, i))
    ends = [v for v in plan.outputs.values()] + [src for src, _ in plan.copies]
    for v in ends:
        if v.buf is not None:
            live[v.buf] = (live.get(v.buf, (0, n))[0], n)
    for name in [b.name for b in plan.buffers.values() if b.kind == "temp" and b.name not in live]:
        del plan.buffers[name]  # retargeted before launch (state written in place): nothing uses it
    temps = [b for b in plan.buffers.values() if b.kind == "temp"]
    requests: list[tuple[object, int, int, int]] = [
        (b.name, *live[b.name], b.numel * b.dtype.itemsize) for b in temps]
    where, plan.pool_bytes = pack(requests, policy.align)
    for b in temps:
        b.offset = where[b.name]


def describe_pool(plan: Plan) -> str:
    """The `planned` stage: the pool's size, then each buffer's place (temporaries by offset)."""
    total = sum(b.numel * b.dtype.itemsize for b in plan.buffers.values() if b.kind == "temp")
    lines = [f"// arena: {plan.pool_bytes} bytes ({plan.pool_bytes / 1024:.1f} KiB; "
             f"{total} bytes of temporaries without reuse)"]
    for b in sorted(plan.buffers.values(), key=lambda b: (b.kind != "temp", b.offset or 0, b.name)):
        where = f"at [{b.offset}, {b.offset + b.numel * b.dtype.itemsize})" if b.offset is not None else "own buffer"
        src = f" <- {b.source}" if b.source else ""
        lines.append(f"//   {b.name}: {b.kind} {b.dtype.value}[{b.numel}] {where}{src}")
    return "\n".join(lines) + "\n"
