"""Constants, shape ops, reductions and matmul."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlpc.errors import ShapeError
from mlpc.ops import scalar as S
from mlpc.ops.elementwise import broadcast_shapes
from mlpc.ops.registry import Attrs, Builder, OpDef, register
from mlpc.types import DType, TensorType


def _one(types: Sequence[TensorType], name: str) -> TensorType:
    if len(types) != 1:
        raise ShapeError(f"{name} takes 1 operand, got {len(types)}")
    return types[0]


def _full_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if types:
        raise ShapeError("full takes no operands")
    try:
        dt = DType(attrs["dtype"])
    except ValueError:
        raise ShapeError(f"unknown dtype {attrs['dtype']!r}") from None
    return [TensorType(dt, tuple(attrs["shape"]))]


register(OpDef("full", "constant", _full_infer,
               lambda value, dtype, shape: np.full(tuple(shape), value, DType(dtype).numpy),
               lambda b, op, cts: [], {"value": 0.0, "dtype": "f32", "shape": ()},
               "a tensor filled with one value", flops=0))


def _broadcast_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    t = _one(types, "broadcast_to")
    shape = tuple(attrs["shape"])
    if broadcast_shapes(t.shape, shape) != shape:
        raise ShapeError(f"cannot broadcast {list(t.shape)} to {list(shape)}")
    return [t.with_shape(shape)]


def _broadcast_vjp(b: Builder, op, cts):
    from mlpc.ops.elementwise import unbroadcast

    return [unbroadcast(b, cts[0], op.operands[0].shape)]


register(OpDef("broadcast_to", "shape", _broadcast_infer,
               lambda x, shape: np.broadcast_to(x, tuple(shape)).copy(), _broadcast_vjp,
               {"shape": ()}, "NumPy broadcast to a shape", scalar=lambda a: S.X, flops=0))


def _reshape_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    t = _one(types, "reshape")
    shape = tuple(attrs["shape"])
    n = 1
    for d in shape:
        n *= d
    if n != t.size:
        raise ShapeError(f"cannot reshape {list(t.shape)} ({t.size} elements) to {list(shape)}")
    return [t.with_shape(shape)]


register(OpDef("reshape", "shape", _reshape_infer, lambda x, shape: np.reshape(x, tuple(shape)),
               lambda b, op, cts: [b.reshape(cts[0], shape=op.operands[0].shape)],
               {"shape": ()}, "same elements, row-major, another shape", scalar=lambda a: S.X, flops=0))


def _transpose_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    t = _one(types, "transpose")
    perm = tuple(attrs["perm"]) or tuple(reversed(range(t.rank)))
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"perm {list(perm)} is not a permutation of {t.rank} axes")
    return [t.with_shape(tuple(t.shape[p] for p in perm))]


def _perm(op) -> tuple[int, ...]:
    return tuple(op.attrs["perm"]) or tuple(reversed(range(op.operands[0].type.rank)))


def _transpose_vjp(b: Builder, op, cts):
    perm = _perm(op)
    inverse = tuple(int(i) for i in np.argsort(perm))
    return [b.transpose(cts[0], perm=inverse)]


register(OpDef("transpose", "shape", _transpose_infer,
               lambda x, perm: np.ascontiguousarray(np.transpose(x, tuple(perm) or None)),
               _transpose_vjp, {"perm": ()}, "permute axes (empty perm reverses them)", flops=0))


def normalize_axes(axes, rank: int) -> tuple[int, ...]:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {list(axes)}")
    return tuple(sorted(out))


def _reduce_infer(name: str):
    def infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        t = _one(types, name)
        if not t.dtype.is_float:
            raise ShapeError(f"{name} needs a float operand, got {t.dtype.value}")
        axes = normalize_axes(attrs["axes"], t.rank)
        if attrs["keepdims"]:
            shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape))
        else:
            shape = tuple(d for i, d in enumerate(t.shape) if i not in axes)
        return [t.with_shape(shape)]
    return infer


def _kept_shape(op) -> tuple[int, ...]:
    x = op.operands[0]
    axes = normalize_axes(op.attrs["axes"], x.type.rank)
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape))


def _sum_vjp(b: Builder, op, cts):
    x = op.operands[0]
    g = cts[0]
    kept = _kept_shape(op)
    if g.shape != kept:
        g = b.reshape(g, shape=kept)
    return [b.broadcast_to(g, shape=x.shape) if g.shape != x.shape else g]


def _mean_vjp(b: Builder, op, cts):
    (g,) = _sum_vjp(b, op, cts)
    x = op.operands[0]
    count = x.type.size // max(op.result.type.size, 1) if x.type.size else 1
    return [b.div(g, b.scalar(float(count), g))]


def _max_vjp(b: Builder, op, cts):
    x = op.operands[0]
    kept = _kept_shape(op)
    m = op.result if op.result.shape == kept else b.reshape(op.result, shape=kept)
    g = cts[0] if cts[0].shape == kept else b.reshape(cts[0], shape=kept)
    mb = b.broadcast_to(m, shape=x.shape) if kept != x.shape else m
    gb = b.broadcast_to(g, shape=x.shape) if kept != x.shape else g
    return [b.where(b.equal(x, mb), gb, b.zeros_like(x))]


def _reduce_ref(fn):
    def ref(x, axes, keepdims):
        return np.asarray(fn(x, axis=normalize_axes(axes, x.ndim), keepdims=keepdims), dtype=x.dtype)
    return ref


for _name, _fn, _vjp in (("sum", np.sum, _sum_vjp), ("mean", np.mean, _mean_vjp), ("max", np.max, _max_vjp)):
    register(OpDef(_name, "reduction", _reduce_infer(_name), _reduce_ref(_fn), _vjp,
                   {"axes": (), "keepdims": False}, f"{_name} over the given axes",
                   flops=lambda op: op.operands[0].type.size))


def _matmul_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 2:
        raise ShapeError(f"matmul takes 2 operands, got {len(types)}")
    a, b = types
    if a.dtype != b.dtype or not a.dtype.is_float:
        raise ShapeError(f"matmul needs two float operands of one dtype, got {a.dtype.value} and {b.dtype.value}")
    if a.rank != 2 or b.rank != 2:
        raise ShapeError(f"matmul needs rank-2 operands, got {list(a.shape)} and {list(b.shape)}")
    m, k = (a.shape[1], a.shape[0]) if attrs["transpose_a"] else a.shape
    k2, n = (b.shape[1], b.shape[0]) if attrs["transpose_b"] else b.shape
    if k != k2:
        ta = "^T" if attrs["transpose_a"] else ""
        tb = "^T" if attrs["transpose_b"] else ""
        raise ShapeError(f"inner dimensions differ: A{ta} is {m}x{k}, B{tb} is {k2}x{n}")
    return [TensorType(a.dtype, (m, n))]


def _matmul_ref(a, b, transpose_a, transpose_b):
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def _matmul_vjp(bd: Builder, op, cts):
    """Cotangents of op(A) @ op(B) as matmuls with transpose flags: no explicit transposes."""
    g = cts[0]
    a, b = op.operands
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    if not ta and not tb:
        return [bd.matmul(g, b, transpose_b=True), bd.matmul(a, g, transpose_a=True)]
    if not ta and tb:
        return [bd.matmul(g, b), bd.matmul(g, a, transpose_a=True)]
    if ta and not tb:
        return [bd.matmul(b, g, transpose_b=True), bd.matmul(a, g)]
    return [bd.matmul(b, g, transpose_a=True, transpose_b=True),
            bd.matmul(g, a, transpose_a=True, transpose_b=True)]


def _matmul_flops(op) -> int:
    """2 M N K: one multiply and one add per term."""
    a = op.operands[0].shape
    k = a[0] if op.attrs.get("transpose_a") else a[1]
    return 2 * op.result.type.size * k


register(OpDef("matmul", "matmul", _matmul_infer, _matmul_ref, _matmul_vjp,
               {"transpose_a": False, "transpose_b": False}, "op(A) @ op(B), op = transpose or not",
               flops=_matmul_flops))
