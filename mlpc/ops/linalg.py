"""Ops for second-order methods: identity constant, concat, slice and a dense linear solve."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlpc.errors import NumericalError, ShapeError
from mlpc.ops.registry import Attrs, Builder, OpDef, register
from mlpc.types import DType, TensorType


def _eye_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if types:
        raise ShapeError("eye takes no operands")
    if attrs["n"] <= 0:
        raise ShapeError(f"eye needs n > 0, got {attrs['n']}")
    try:
        dt = DType(attrs["dtype"])
    except ValueError:
        raise ShapeError(f"unknown dtype {attrs['dtype']!r}") from None
    return [TensorType(dt, (attrs["n"], attrs["n"]))]


register(OpDef("eye", "constant", _eye_infer, lambda n, dtype: np.eye(n, dtype=DType(dtype).numpy),
               lambda b, op, cts: [], {"n": 1, "dtype": "f32"}, "the n x n identity matrix", flops=0))


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis % rank


def _concat_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if not types:
        raise ShapeError("concat needs at least one operand")
    first = types[0]
    ax = _axis(attrs["axis"], first.rank)
    total = 0
    for t in types:
        if t.dtype != first.dtype or t.rank != first.rank:
            raise ShapeError(f"concat operands must share dtype and rank, got {first} and {t}")
        if any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)) if i != ax):
            raise ShapeError(f"concat along axis {ax}: shapes {list(first.shape)} and {list(t.shape)} differ elsewhere")
        total += t.shape[ax]
    return [first.with_shape(first.shape[:ax] + (total,) + first.shape[ax + 1:])]


def _concat_vjp(b: Builder, op, cts):
    ax = _axis(op.attrs["axis"], op.result.type.rank)
    out, start = [], 0
    for v in op.operands:
        stop = start + v.shape[ax]
        out.append(b.slice(cts[0], axis=ax, start=start, stop=stop))
        start = stop
    return out


register(OpDef("concat", "shape", _concat_infer,
               lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp, {"axis": 0},
               "join operands along an axis", flops=0))


def _slice_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 1:
        raise ShapeError(f"slice takes 1 operand, got {len(types)}")
    t = types[0]
    ax = _axis(attrs["axis"], t.rank)
    start, stop = attrs["start"], attrs["stop"]
    if not 0 <= start < stop <= t.shape[ax]:
        raise ShapeError(f"slice [{start}:{stop}] out of range for axis {ax} of size {t.shape[ax]}")
    return [t.with_shape(t.shape[:ax] + (stop - start,) + t.shape[ax + 1:])]


def _slice_ref(x, axis, start, stop):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return np.ascontiguousarray(x[tuple(index)])


def _zeros_along(b: Builder, x, axis: int, size: int):
    shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
    return b.op("full", value=0.0, dtype=x.dtype.value, shape=shape)


def _slice_vjp(b: Builder, op, cts):
    x = op.operands[0]
    ax = _axis(op.attrs["axis"], x.type.rank)
    start, stop = op.attrs["start"], op.attrs["stop"]
    parts = []
    if start > 0:
        parts.append(_zeros_along(b, x, ax, start))
    parts.append(cts[0])
    if stop < x.shape[ax]:
        parts.append(_zeros_along(b, x, ax, x.shape[ax] - stop))
    return [parts[0] if len(parts) == 1 else b.concat(*parts, axis=ax)]


register(OpDef("slice", "shape", _slice_infer, _slice_ref, _slice_vjp, {"axis": 0, "start": 0, "stop": 1},
               "elements start..stop-1 along one axis", flops=0))


def _solve_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 2:
        raise ShapeError(f"linear_solve takes (A, b), got {len(types)} operands")
    a, rhs = types
    if a.rank != 2 or a.shape[0] != a.shape[1] or not a.dtype.is_float:
        raise ShapeError(f"linear_solve needs a square float matrix A, got {a}")
    if rhs.dtype != a.dtype or rhs.rank not in (1, 2) or rhs.shape[0] != a.shape[0]:
        raise ShapeError(f"linear_solve: b must be {a.dtype.value}[{a.shape[0]}] or [{a.shape[0]}, k], got {rhs}")
    if attrs["method"] not in ("lu", "cholesky"):
        raise ShapeError(f"linear_solve method must be lu or cholesky, got {attrs['method']!r}")
    return [rhs]


def solve_reference(a, rhs, shift, method):
    """x with (A + shift I) x = b, computed in float64; a clear error when the system is singular."""
    m = np.asarray(a, np.float64) + shift * np.eye(a.shape[0])
    r = np.asarray(rhs, np.float64)
    try:
        if method == "cholesky":
            lower = np.linalg.cholesky(m)
            x = np.linalg.solve(lower.T, np.linalg.solve(lower, r))
        else:
            x = np.linalg.solve(m, r)
    except np.linalg.LinAlgError as e:
        what = "not positive definite" if method == "cholesky" else "singular"
        raise NumericalError(f"linear_solve: the {m.shape[0]}x{m.shape[0]} matrix A + {shift:g} I is {what} "
                             f"({e}); add damping") from None
    if not np.all(np.isfinite(x)):
        raise NumericalError("linear_solve produced non-finite values; add damping")
    return x.astype(rhs.dtype)


def _solve_vjp(b: Builder, op, cts):
    """x = (A + sI)^-1 b: db = (A + sI)^-T g, dA = -db x^T."""
    a, rhs = op.operands
    x = op.result
    db = b.linear_solve(b.transpose(a), cts[0], **op.attrs)
    if rhs.type.rank == 1:
        n = rhs.shape[0]
        da = b.matmul(b.reshape(db, shape=(n, 1)), b.reshape(x, shape=(1, n)))
    else:
        da = b.matmul(db, x, transpose_b=True)
    return [b.neg(da), db]


def _solve_flops(op) -> int:
    """LU factorization (2/3 n^3) plus forward/back substitution (2 n^2 per right-hand side)."""
    n = op.operands[0].shape[0]
    rhs = op.operands[1].shape[1] if op.operands[1].type.rank == 2 else 1
    return (2 * n ** 3) // 3 + 2 * n * n * rhs


register(OpDef("linear_solve", "other", _solve_infer, solve_reference, _solve_vjp,
               {"shift": 0.0, "method": "lu"},
               "x with (A + shift I) x = b (LU or Cholesky, in float64)", flops=_solve_flops))
