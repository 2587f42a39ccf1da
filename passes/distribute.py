"""The `distribute` pass: data-parallel training averages the loss and every gradient over the ranks."""

from __future__ import annotations

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Op, Output, Value, clone
from mlpc.ops import Builder
from mlpc.types import DType, TensorType
from passes.manager import register_pass

ROW_OFFSET = "row_offset"  # data input of a step with dropout: this rank's first row in the global batch


@register_pass("distribute")
def distribute(graph: Graph) -> Graph:
    """Wrap `loss` and each `grad.<p>` output in `allreduce {reduce = "row_weighted_mean"}`.

    Runs between autodiff and the optimizer pass, so clipping, the NaN guard and the update all see
    the gradient of the whole global batch. On one rank the allreduce is the identity.

    A graph with dropout gets a data input `row_offset` (i32[]) that every `dropout_mask` takes as its
    first row's position, so each rank draws the masks of its rows of the global batch."""
    grads = [o for o in graph.outputs if o.name.startswith("grad.")]
    if not grads:
        raise MlpcError("distribute needs grad.<param> outputs: run autodiff first")
    if any(op.name == "allreduce" for op in graph.ops):
        raise MlpcError("distribute ran twice: the graph already has allreduce ops")
    graph = _key_masks_by_global_row(graph)
    b = Builder()
    outputs = []
    for o in graph.outputs:
        if o.name == "loss" or o.name.startswith("grad."):
            b.loc = o.value.producer.loc if o.value.producer is not None else ""
            outputs.append(Output(o.name, b.allreduce(o.value, reduce="row_weighted_mean")))
        else:
            outputs.append(o)
    return graph.replace(ops=graph.ops + b.ops, outputs=outputs)


def _key_masks_by_global_row(graph: Graph) -> Graph:
    if not any(op.name == "dropout_mask" for op in graph.ops):
        return graph
    if any(i.name == ROW_OFFSET for i in graph.inputs):
        raise MlpcError(f"distribute: the graph already has an input named {ROW_OFFSET!r}")
    g = clone(graph)
    row0 = Value(TensorType(DType.i32, ()), ROW_OFFSET)
    ops = []
    for op in g.ops:
        if op.name == "dropout_mask" and len(op.operands) == 1:
            op = Op(op.name, [op.operands[0], row0], op.results, dict(op.attrs), op.loc)
            op.result.producer = op
        ops.append(op)
    return g.replace(ops=ops, inputs=g.inputs + [Input(ROW_OFFSET, row0, "data")])
