"""Vectorization (vmap) of IR ops over a new leading batch axis, one batching rule per op family.

`vectorize(ops, batched, size, builder)` re-emits `ops` into `builder`: an op none of whose operands
is batched is kept as it is (its result is shared by every batch member); an op with a batched
operand is rewritten by its rule into ops on values with a leading axis of length `size`. The IR's
matmul is 2-D, so a matmul with one batched operand folds the batch axis into the other dimension
(one big matmul instead of `size` small ones). Used by the Hessian builder: the Hessian-vector product
graph vectorized over all basis tangents at once gives every Hessian column in one pass.
"""

from __future__ import annotations

from typing import Callable

from mlpc.errors import MlpcError, ShapeError
from mlpc.ir import Op, Value
from mlpc.ops import Builder, get
from mlpc.ops.structural import normalize_axes

Rule = Callable[[Builder, Op, list[Value], list[bool], int], list[Value]]


def _lift(b: Builder, v: Value, batched: bool, rank: int, size: int) -> Value:
    """A batched value [K, *s] reshaped to [K, 1.., *s] so that it has `rank` + 1 axes."""
    if not batched or v.type.rank - 1 >= rank:
        return v
    pad = rank - (v.type.rank - 1)
    return b.reshape(v, shape=(size,) + (1,) * pad + v.shape[1:])


def _full_batch(b: Builder, v: Value, batched: bool, shape: tuple[int, ...], size: int) -> Value:
    """Broadcast any operand to the batched result shape [K, *shape]."""
    v = _lift(b, v, batched, len(shape), size) if batched else v
    target = (size,) + shape
    return v if v.shape == target else b.broadcast_to(v, shape=target)


def _elementwise(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    rank = op.result.type.rank
    lifted = [_lift(b, v, f, rank, size) for v, f in zip(args, flags, strict=True)]
    try:
        return [b.op(op.name, *lifted, **op.attrs)]
    except ShapeError:  # ops whose operands must have one type (relu_grad, ...): broadcast everything
        full = [_full_batch(b, v, f, op.result.shape, size) for v, f in zip(args, flags, strict=True)]
        return [b.op(op.name, *full, **op.attrs)]


def _reduction(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    axes = [a + 1 for a in normalize_axes(op.attrs["axes"], op.operands[0].type.rank)]
    return [b.op(op.name, args[0], axes=axes, keepdims=op.attrs["keepdims"])]


def _same(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    return [b.op(op.name, *args, **op.attrs)]  # last-axis ops: softmax, log_softmax


def _reshape(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    return [b.reshape(args[0], shape=(size,) + tuple(op.attrs["shape"]))]


def _broadcast(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    return [_full_batch(b, args[0], True, tuple(op.attrs["shape"]), size)]


def _transpose(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    rank = op.operands[0].type.rank
    perm = tuple(op.attrs["perm"]) or tuple(reversed(range(rank)))
    return [b.transpose(args[0], perm=(0,) + tuple(p + 1 for p in perm))]


def _matmul(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    x, y = args
    m, n = op.result.shape
    if flags[0] and not flags[1]:  # [K, m, k] @ B: one [K*m, k] @ B
        if ta:
            x = b.transpose(x, perm=(0, 2, 1))
        k = x.shape[2]
        out = b.matmul(b.reshape(x, shape=(size * m, k)), y, transpose_b=tb)
        return [b.reshape(out, shape=(size, m, n))]
    if flags[1] and not flags[0]:  # A @ [K, k, n]: one A @ [k, K*n]
        if tb:
            y = b.transpose(y, perm=(0, 2, 1))
        k = y.shape[1]
        folded = b.reshape(b.transpose(y, perm=(1, 0, 2)), shape=(k, size * n))
        out = b.reshape(b.matmul(x, folded, transpose_a=ta), shape=(m, size, n))
        return [b.transpose(out, perm=(1, 0, 2))]
    # both batched: broadcast multiply and sum over the inner axis
    if ta:
        x = b.transpose(x, perm=(0, 2, 1))
    if tb:
        y = b.transpose(y, perm=(0, 2, 1))
    k = x.shape[2]
    prod = b.mul(b.reshape(x, shape=(size, m, k, 1)), b.reshape(y, shape=(size, 1, k, n)))
    return [b.sum(prod, axes=[2])]


def _sce_grad(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    logits, labels, g = args
    rows, classes = op.operands[0].shape
    if flags[0]:  # fold the batch into the rows; the op divides by K*rows, so scale g by K
        labels = b.reshape(b.broadcast_to(labels, shape=(size, rows)), shape=(size * rows,))
        scale = b.scalar(float(size), op.operands[2])
        g_one = b.mul(op.operands[2], scale) if not flags[2] else scale
        out = b.softmax_cross_entropy_grad(b.reshape(logits, shape=(size * rows, classes)), labels, g_one)
        out = b.reshape(out, shape=(size, rows, classes))
    else:
        out = b.softmax_cross_entropy_grad(logits, labels, b.scalar(1.0, op.operands[2]))
    if flags[2]:
        out = b.mul(b.reshape(g, shape=(size, 1, 1)), out)
    return [out]


def _mse(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    p, t = (_full_batch(b, v, f, op.operands[0].shape, size) for v, f in zip(args, flags, strict=True))
    rank = op.operands[0].type.rank
    return [b.mean(b.square(b.sub(p, t)), axes=list(range(1, rank + 1)))]


def _concat(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    full = [_full_batch(b, v, f, o.shape, size) for v, f, o in zip(args, flags, op.operands, strict=True)]
    axis = op.attrs["axis"] % op.result.type.rank
    return [b.concat(*full, axis=axis + 1)]


def _slice(b: Builder, op: Op, args: list[Value], flags: list[bool], size: int) -> list[Value]:
    axis = op.attrs["axis"] % op.result.type.rank
    return [b.slice(args[0], axis=axis + 1, start=op.attrs["start"], stop=op.attrs["stop"])]


RULES: dict[str, Rule] = {
    "sum": _reduction, "mean": _reduction, "max": _reduction, "softmax": _same, "log_softmax": _same,
    "reshape": _reshape, "broadcast_to": _broadcast, "transpose": _transpose, "matmul": _matmul,
    "softmax_cross_entropy_grad": _sce_grad, "mse": _mse, "concat": _concat, "slice": _slice,
}


def rule_for(name: str) -> Rule | None:
    if name in RULES:
        return RULES[name]
    return _elementwise if get(name).kind == "elementwise" else None


def vectorize(ops: list[Op], batched: dict[Value, Value], size: int, b: Builder,
              emit_unbatched: bool = True) -> dict[Value, Value]:
    """Re-emit `ops` into `b` over a leading axis of length `size`; `batched` maps a value to its
    batched version [size, *shape] and is returned extended with every batched result.
    `emit_unbatched=False` leaves out the ops with no batched operand (already emitted by an earlier call)."""
    out = dict(batched)
    for op in ops:
        flags = [v in out for v in op.operands]
        if not any(flags):
            if emit_unbatched:
                b.ops.append(op)
            continue
        rule = rule_for(op.name)
        if rule is None:
            raise MlpcError(f"vectorize: op {op.name}{f' at {op.loc}' if op.loc else ''} has no batching rule")
        b.loc = op.loc
        results = rule(b, op, [out.get(v, v) for v in op.operands], flags, size)
        for old, new in zip(op.results, results, strict=True):
            if new.shape != (size,) + old.shape:
                raise MlpcError(f"vectorize: the {op.name} rule gave {list(new.shape)} for {old.type}")
            out[old] = new
    return out
