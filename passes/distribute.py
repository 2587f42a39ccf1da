"""The `distribute` pass: data-parallel training averages the loss and every gradient over the ranks."""

from __future__ import annotations

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Output
from mlpc.ops import Builder
from passes.manager import register_pass


@register_pass("distribute")
def distribute(graph: Graph) -> Graph:
    """Wrap `loss` and each `grad.<p>` output in `allreduce {reduce = "row_weighted_mean"}`.

    Runs between autodiff and the optimizer pass, so clipping, the NaN guard and the update all see
    the gradient of the whole global batch. On one rank the allreduce is the identity."""
    grads = [o for o in graph.outputs if o.name.startswith("grad.")]
    if not grads:
        raise MlpcError("distribute needs grad.<param> outputs: run autodiff first")
    if any(op.name == "allreduce" for op in graph.ops):
        raise MlpcError("distribute ran twice: the graph already has allreduce ops")
    b = Builder()
    outputs = []
    for o in graph.outputs:
        if o.name == "loss" or o.name.startswith("grad."):
            b.loc = o.value.producer.loc if o.value.producer is not None else ""
            outputs.append(Output(o.name, b.allreduce(o.value, reduce="row_weighted_mean")))
        else:
            outputs.append(o)
    return graph.replace(ops=graph.ops + b.ops, outputs=outputs)
