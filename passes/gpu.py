"""Rewrites only GPU backends want before planning, registered as passes (a policy names them)."""

from __future__ import annotations

from mlpc.ir import Graph, Value, clone
from passes.manager import register_pass


@register_pass("gpu-reuse-relu")
def reuse_relu(graph: Graph) -> Graph:
    """relu_grad(z, g) -> relu_grad(relu(z), g) where relu(z) exists: the same sign test, and z need
    not leave the matmul epilogue that computes relu(z). Ops keep their positions."""
    out = clone(graph)
    relu_of: dict[Value, Value] = {}
    for op in out.ops:
        if op.name == "relu":
            relu_of.setdefault(op.operands[0], op.result)
    for op in out.ops:
        if op.name == "relu_grad" and op.operands[0] in relu_of:
            op.operands = [relu_of[op.operands[0]], *op.operands[1:]]
    return out


def apply_rewrites(graph: Graph, names: tuple[str, ...]) -> Graph:
    """Run the named registered rewrite passes in order (each returns a new graph)."""
    from passes.manager import get_pass

    for name in names:
        graph = get_pass(name)(graph)
    return graph
