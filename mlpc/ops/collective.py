"""Collective ops: `allreduce` sums (or averages) a tensor over the ranks of a data-parallel job."""

from __future__ import annotations

from typing import Sequence

from mlpc.errors import ShapeError
from mlpc.ops.registry import Attrs, Builder, OpDef, register
from mlpc.types import TensorType

REDUCTIONS = ("sum", "mean", "row_weighted_mean")


def _allreduce_infer(types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
    if len(types) != 1:
        raise ShapeError(f"allreduce takes one operand, got {len(types)}")
    if attrs["reduce"] not in REDUCTIONS:
        raise ShapeError(f"allreduce: reduce must be one of {', '.join(REDUCTIONS)}, got {attrs['reduce']!r}")
    if not types[0].dtype.is_float:
        raise ShapeError(f"allreduce needs a float tensor, got {types[0]}")
    return [types[0]]


def _allreduce_ref(x, reduce):  # noqa: ANN001
    """On one rank every reduction is the identity; the runtime splits the step at collectives and
    calls MPI between the two halves (runtime/distributed_step.py), so backends never see this op."""
    return x


def _allreduce_vjp(b: Builder, op, cts):  # noqa: ANN001
    g = cts[0]
    if g is None:
        return [None]
    return [b.allreduce(g, reduce=op.attrs["reduce"])]


register(OpDef("allreduce", "other", _allreduce_infer, _allreduce_ref, _allreduce_vjp, {"reduce": "sum"},
               doc="sum/mean over the ranks of the job; `row_weighted_mean` weighs each rank by its rows "
                   "of the global batch (a rank's mean loss/gradient becomes the global batch's)",
               # one add per element and rank, done by MPI between the two halves of a data-parallel step
               flops=lambda op: op.result.type.size))
