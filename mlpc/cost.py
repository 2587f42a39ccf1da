"""Per-op cost rules (FLOPs, bytes moved) as data keyed by op name, with defaults by op kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from mlpc.ir import Op, Value

# FLOPs per output element of elementwise ops. Transcendentals (exp, log, tanh, sqrt) count as one
# FLOP each, like most roofline tools; composite ops count the arithmetic of their usual expansion.
ELEMENTWISE_FLOPS: dict[str, int] = {
    "add": 1, "sub": 1, "mul": 1, "div": 1, "maximum": 1, "minimum": 1,
    "greater": 1, "greater_equal": 1, "less": 1, "less_equal": 1, "equal": 1, "where": 1,
    "neg": 1, "exp": 1, "log": 1, "sqrt": 1, "square": 1, "abs": 1, "sign": 1, "pow": 1,
    "relu": 1, "relu_grad": 1, "leaky_relu": 2, "leaky_relu_grad": 2,
    "sigmoid": 3,   # 1 / (1 + exp(-x))
    "tanh": 1,
    "gelu": 8,      # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    "cast": 0,
}


def _numel(v: Value) -> int:
    return v.type.size


def _matmul(op: Op) -> int:
    a = op.operands[0].shape
    k = a[0] if op.attrs.get("transpose_a") else a[1]
    return 2 * op.result.type.size * k


def _reduce(op: Op) -> int:
    return _numel(op.operands[0])


def _rowwise(per_element: int) -> Callable[[Op], int]:
    return lambda op: per_element * _numel(op.operands[0])


def _sgd(op: Op) -> int:
    a = op.attrs
    per = 2 + (2 if a.get("weight_decay") else 0) + (3 if a.get("momentum") else 0) \
        + (2 if a.get("nesterov") else 0)
    return per * _numel(op.operands[0])


def _momentum(op: Op) -> int:
    return (5 + (2 if op.attrs.get("unbiased") else 0)) * _numel(op.operands[0])


def _adam(op: Op) -> int:
    a = op.attrs
    per = 13 + (2 if a.get("weight_decay") else 0) - (2 if not a.get("bias_correction", True) else 0)
    return per * _numel(op.operands[0])


def _linear_solve(op: Op) -> int:
    """LU factorization (2/3 n^3) plus forward/back substitution (2 n^2 per right-hand side)."""
    n = op.operands[0].shape[0]
    rhs = op.operands[1].shape[1] if op.operands[1].type.rank == 2 else 1
    return (2 * n ** 3) // 3 + 2 * n * n * rhs


# FLOP rules for ops that are not plain elementwise; anything not here or above costs 0 FLOPs
# (shape ops, constants, one_hot: they only move or write memory).
FLOP_RULES: dict[str, Callable[[Op], int]] = {
    "matmul": _matmul,
    "sum": _reduce, "mean": _reduce, "max": _reduce,
    "softmax": _rowwise(5),            # max, sub, exp, sum, div
    "log_softmax": _rowwise(5),        # max, sub, exp, sum, log+sub
    "softmax_cross_entropy": _rowwise(5),
    "softmax_cross_entropy_grad": _rowwise(6),
    "mse": _rowwise(3),
    "sgd_update": _sgd, "momentum_update": _momentum, "adam_update": _adam,
    "linear_solve": _linear_solve,
    "eye": lambda op: 0, "concat": lambda op: 0, "slice": lambda op: 0,  # memory only
    # integer work, counted as operations: 10 Philox rounds of ~8 per 4 elements, a compare and select each
    "dropout_mask": lambda op: 22 * op.result.type.size,
}


def op_flops(op: Op) -> int:
    """Floating-point operations one execution of `op` performs."""
    if op.name in FLOP_RULES:
        return int(FLOP_RULES[op.name](op))
    if op.name in ELEMENTWISE_FLOPS:
        return ELEMENTWISE_FLOPS[op.name] * sum(_numel(r) for r in op.results)
    return 0


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
