"""Cost of ops and fused kernels: FLOPs from each op's own rule (beside the op), bytes moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from mlpc.errors import MlpcError
from mlpc.ir import Op, Value
from mlpc.ops import registry


def op_flops(op: Op) -> int:
    """Floating-point operations one execution of `op` performs, from the op's own cost rule: an int
    is FLOPs per result element (transcendentals count one, like most roofline tools), a function
    counts the whole op. An op without a rule is refused at registration."""
    rule = registry.get(op.name).flops
    if rule is None:
        raise MlpcError(f"op {op.name} has no FLOP cost rule")
    if isinstance(rule, int):
        return rule * sum(r.type.size for r in op.results)
    return int(rule(op))


def values_bytes(values: Iterable[Value]) -> int:
    seen: set[int] = set()
    total = 0
    for v in values:
        if id(v) not in seen:
            seen.add(id(v))
            total += v.type.nbytes
    return total


def op_bytes(op: Op) -> int:
    """Bytes an unfused kernel for `op` reads and writes (each distinct operand once, every result)."""
    return values_bytes(list(op.operands) + list(op.results))


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes moved by one op or one kernel."""

    flops: int
    bytes: int

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP/byte (0 when nothing moves)."""
        return self.flops / self.bytes if self.bytes else 0.0


def op_cost(op: Op) -> Cost:
    return Cost(op_flops(op), op_bytes(op))


def group_cost(ops: list[Op], outside_needed: set[int]) -> Cost:
    """Cost of a fused kernel: all FLOPs of its ops; bytes of values crossing the kernel's boundary.

    `outside_needed` holds ids of values that later kernels or the graph's outputs read.
    """
    produced = {id(r) for op in ops for r in op.results}
    reads = [v for op in ops for v in op.operands if id(v) not in produced and not _inlined_constant(v)]
    writes = [r for op in ops for r in op.results if id(r) in outside_needed]
    return Cost(sum(op_flops(op) for op in ops), values_bytes(reads) + values_bytes(writes))


def _inlined_constant(v: Value) -> bool:
    """Scalar `full` constants become immediates in fused code and move no memory."""
    p = v.producer
    return p is not None and p.name == "full" and v.type.size == 1
