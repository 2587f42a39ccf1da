"""Memory planning for every backend: one static arena, buffers reused by liveness, a backend policy.

`pack` places live ranges in one arena (both backends use it: the LLVM step's arena of kernel
boundary values below, the Triton step's pool of temporaries in codegen/triton_memory.py); a
`MemoryPolicy` says how the backend aligns slots and whether new state may overwrite its input.

Every value a kernel hands to another kernel (or to the caller) gets a slot: an offset in the arena,
or, for graph inputs, the caller's buffer. A param/state output is written in place into its input's
buffer when no kernel reads the old value after the kernel that produces the new one; otherwise it
gets an arena slot and a copy back at the end of the step. Two values share arena bytes only if
their live ranges (first writer kernel to last reader kernel, inclusive) are disjoint, so no kernel
ever sees two of its buffers overlap except an in-place update.

Outputs named `partial.<k>` (the values a data-parallel step reduces over MPI, see
passes/collective_split.py) get one contiguous region at the end of the arena, in output order, followed by
one f32 slot for the row count: the runtime reduces that region in place with a single Allreduce.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlpc.ir import Graph, Value
from mlpc.types import DType
from passes.plan import FusionPlan

ALIGN = 64
BUCKET_PREFIX = "partial."  # outputs reduced over the ranks: placed contiguously (the gradient bucket)


@dataclass(frozen=True)
class MemoryPolicy:
    """What a backend's memory allows: slot alignment in bytes, and whether a new param/state value
    may be written into its input's buffer (else it gets a slot and a copy back)."""

    name: str
    align: int = ALIGN
    inplace_state: bool = True


CPU_MEMORY = MemoryPolicy("llvm", ALIGN, True)


def pack(requests: list[tuple[object, int, int, int]], align: int = ALIGN) -> tuple[dict[object, int], int]:
    """Offsets for (key, first use, last use, bytes) requests in one arena, and its size: two requests
    share bytes only if their live ranges (inclusive) are disjoint. Greedy: biggest first, each at
    the lowest offset clear of every live-overlapping placement."""
    def up(n: int) -> int:
        return (n + align - 1) // align * align

    order = sorted(requests, key=lambda r: (-up(r[3]), r[1]))
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, lo, hi)
    where: dict[object, int] = {}
    for key, lo, hi, nbytes in order:
        size = up(nbytes)
        conflicts = sorted((po, ps) for po, ps, a, b in placed if not (b < lo or hi < a))
        off = 0
        for po, ps in conflicts:
            if off + size <= po:
                break
            off = max(off, up(po + ps))
        placed.append((off, size, lo, hi))
        where[key] = off
    return where, up(max((po + ps for po, ps, _, _ in placed), default=0))


@dataclass(frozen=True)
class Slot:
    """Where a value lives: `external` names a graph input's buffer, else `offset` in the arena."""

    offset: int
    nbytes: int
    external: str | None = None


@dataclass
class MemoryPlan:
    arena_bytes: int
    slots: dict[Value, Slot]
    inplace: dict[str, Value]                 # state name -> new value written into its buffer
    copy_back: list[tuple[Value, str]]        # (new value in arena, state input name) after the step
    scratch: dict[int, int] = field(default_factory=dict)  # kernel index -> arena offset of its scratch
    intervals: dict[Value, tuple[int, int]] = field(default_factory=dict)
    bucket: tuple[int, int] | None = None  # (offset, bytes) of the reduced outputs + the row count slot

    def dump(self, plan: FusionPlan) -> str:
        from mlpc.printer import value_names

        names = value_names(plan.graph)
        lines = [f"// arena: {self.arena_bytes} bytes ({self.arena_bytes / 1024:.1f} KiB)"]
        arena = sorted(((s.offset, v) for v, s in self.slots.items() if s.external is None), key=lambda t: t[0])
        for off, v in arena:
            lo, hi = self.intervals.get(v, (0, 0))
            lines.append(f"//   %{names[v]}: {v.type} at [{off}, {off + self.slots[v].nbytes}) live k{lo}..k{hi}")
        for k, off in sorted(self.scratch.items()):
            lines.append(f"//   scratch of k{k} at {off}")
        for name, v in self.inplace.items():
            lines.append(f"//   in place: %{names[v]} -> {name}")
        for v, name in self.copy_back:
            lines.append(f"//   copy back: %{names[v]} -> {name}")
        if self.bucket is not None:
            lines.append(f"//   reduction bucket at [{self.bucket[0]}, {sum(self.bucket)}) (row count in its last f32)")
        return "\n".join(lines) + "\n"


def _same_index_read(plan: FusionPlan, k: int, v: Value, new: Value) -> bool:
    """Kernel k reads v only at the index it writes (elementwise-style), so writing over v is safe."""
    kern = plan.kernels[k]
    if kern.kind == "optimizer":
        # each update op reads its own p/g/state at the index it writes; the old value must be
        # read only by the op that produces the new value (ops run one after another)
        readers = [plan.graph.ops[i] for i in kern.ops if v in plan.graph.ops[i].operands]
        return len(readers) == 1 and v in readers[0].operands[:-1] and new in readers[0].results
    if kern.kind == "elementwise":
        out_shapes = {r.shape for i in kern.ops for r in plan.graph.ops[i].results}
        return len(out_shapes) == 1 and v.shape in out_shapes and all(
            plan.graph.ops[i].name != "reshape" for i in kern.ops)
    return False


def plan_memory(plan: FusionPlan, scratch_bytes: dict[int, int] | None = None,
                policy: MemoryPolicy = CPU_MEMORY) -> MemoryPlan:
    """Assign every kernel-boundary value a slot; `scratch_bytes[k]` reserves kernel-private bytes."""
    g: Graph = plan.graph
    n = len(plan.kernels)
    inputs = {i.value: i for i in g.inputs}
    producer: dict[Value, int] = {}
    last_use: dict[Value, int] = {}
    for kern in plan.kernels:
        for v in kern.outputs:
            producer[v] = kern.index
        for v in kern.inputs:
            last_use[v] = max(last_use.get(v, -1), kern.index)
    for o in g.outputs:
        last_use[o.value] = n  # live to the end of the step
    state_inputs = {i.name: i for i in g.inputs if i.role in ("param", "state")}

    inplace: dict[str, Value] = {}
    copy_back: list[tuple[Value, str]] = []
    slots: dict[Value, Slot] = {}
    taken: set[Value] = set()
    for o in g.outputs:
        if o.name not in state_inputs or o.value is state_inputs[o.name].value:
            continue
        v = o.value
        old = state_inputs[o.name].value
        k = producer.get(v)
        readers = [kk.index for kk in plan.kernels if old in kk.inputs]
        ok = (policy.inplace_state and k is not None and v not in taken and v not in inputs and old.type == v.type
              and all(r < k or (r == k and _same_index_read(plan, k, old, v)) for r in readers))
        if ok and k is not None:
            # the old buffer must not be read through v's slot by later kernels of other names
            inplace[o.name] = v
            taken.add(v)
            slots[v] = Slot(0, v.type.nbytes, o.name)
        else:
            copy_back.append((v, o.name))

    # intervals of arena values
    intervals: dict[Value, tuple[int, int]] = {}
    for v, k in producer.items():
        if v in slots or v in inputs:
            continue
        intervals[v] = (k, max(last_use.get(v, k), k))
    for v, _name in copy_back:
        if v in intervals:
            intervals[v] = (intervals[v][0], n)
    requests: list[tuple[object, int, int, int]] = [(v, t[0], t[1], v.type.nbytes) for v, t in intervals.items()]
    for kidx, nbytes in (scratch_bytes or {}).items():
        if nbytes > 0:
            requests.append((("scratch", kidx), kidx, kidx, nbytes))
    reduced = _bucket_values(g, intervals)
    in_bucket = set(reduced)
    requests = [r for r in requests if r[0] not in in_bucket]
    where, arena = pack(requests, policy.align)
    bucket = None
    if reduced:
        start = arena
        for v in reduced:
            where[v] = arena
            arena = _up(arena + v.type.nbytes, policy.align)
        arena += _up(4, policy.align)  # the row count: the region's last f32
        bucket = (start, arena - start)
    for v in intervals:
        slots[v] = Slot(where[v], v.type.nbytes)
    for i in g.inputs:
        slots[i.value] = Slot(0, i.value.type.nbytes, i.name)
    scratch = {kidx: where[("scratch", kidx)] for kidx, nb in (scratch_bytes or {}).items() if nb > 0}
    return MemoryPlan(arena, slots, inplace, copy_back, scratch, intervals, bucket)


def _up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _bucket_values(g: Graph, intervals: dict[Value, tuple[int, int]]) -> list[Value]:
    """The `partial.<k>` outputs in order, when they can share one f32 region (each an arena value of
    its own, named once); else none, and the runtime copies them into a bucket instead."""
    outs = [o for o in g.outputs if o.name.startswith(BUCKET_PREFIX)]
    values = [o.value for o in outs]
    ok = all(v in intervals and v.dtype == DType.f32 for v in values) and \
        all(sum(o.value is v for o in g.outputs) == 1 for v in values)
    return values if ok else []
