"""Reverse-mode autodiff over the registry's VJP rules; its output differentiates again."""

from __future__ import annotations

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, get
from passes.manager import register_pass


def _names(wrt: str | list[str] | tuple[str, ...] | None, graph: Graph) -> list[Input]:
    if wrt is None or wrt == "params":
        return graph.inputs_with_role("param")
    names = wrt.split(",") if isinstance(wrt, str) else list(wrt)
    known = [i.name for i in graph.inputs]
    for n in names:
        if n.strip() not in known:
            raise MlpcError(f"autodiff: wrt={n.strip()!r} is not an input of @{graph.name}; inputs: {', '.join(known)}")
    return [graph.input(n.strip()) for n in names]


def _of(graph: Graph, of: str) -> Value:
    if not graph.has_output(of):
        outs = ", ".join(o.name for o in graph.outputs)
        raise MlpcError(f"autodiff: @{graph.name} has no output {of!r} to differentiate (outputs: {outs}); "
                        "pass of=<output name>")
    return graph.output(of).value


def gradients(graph: Graph, of: Value, wrt: list[Value], builder: Builder) -> dict[Value, Value]:
    """Emit into `builder` the ops computing d(of)/d(w) for each w; returns cotangents by value."""
    if of.type.shape != () or not of.dtype.is_float:
        raise MlpcError(f"autodiff needs a float scalar to differentiate, got {of.type}")
    depends: set[Value] = set(wrt)
    for op in graph.ops:
        if any(v in depends for v in op.operands):
            depends.update(op.results)
    ct: dict[Value, Value] = {of: builder.op("full", value=1.0, dtype=of.dtype.value, shape=())}
    for op in reversed(graph.ops):
        cts = [ct.get(r) for r in op.results]
        if all(c is None for c in cts) or not any(v in depends for v in op.operands):
            continue
        opdef = get(op.name)
        if opdef.vjp is None:
            raise MlpcError(f"op {op.name}{f' at {op.loc}' if op.loc else ''} has no derivative rule")
        builder.loc = op.loc
        cts = [c if c is not None else builder.zeros_like(r) for c, r in zip(cts, op.results)]
        for v, g in zip(op.operands, opdef.vjp(builder, op, cts)):
            if g is None or v not in depends:
                continue
            if g.type != v.type:
                raise MlpcError(f"VJP rule of {op.name} gave a {g.type} cotangent for a {v.type} operand")
            ct[v] = builder.add(ct[v], g) if v in ct else g
    return ct


@register_pass("autodiff")
def autodiff(graph: Graph, of: str = "loss", wrt: str | list[str] | None = None, prefix: str = "grad.") -> Graph:
    """Add outputs `grad.<input>` = d(output `of`)/d(input) for the param inputs (or `wrt`)."""
    targets = _names(wrt, graph)
    b = Builder()
    ct = gradients(graph, _of(graph, of), [i.value for i in targets], b)
    outs = list(graph.outputs)
    for i in targets:
        g = ct.get(i.value)
        if g is None:
            b.loc = ""
            g = b.zeros_like(i.value)
        outs.append(Output(prefix + i.name, g))
    return graph.replace(ops=graph.ops + b.ops, outputs=outs)


@register_pass("hvp")
def hessian_vector_product(graph: Graph, of: str = "loss", wrt: str | list[str] | None = None) -> Graph:
    """Add data inputs `tangent.<p>` and outputs `hvp.<p>` = H v by differentiating (grad . v)."""
    targets = _names(wrt, graph)
    b = Builder()
    ct = gradients(graph, _of(graph, of), [i.value for i in targets], b)
    tangents = [Input("tangent." + i.name, Value(i.value.type, "tangent." + i.name), "data") for i in targets]
    total: Value | None = None
    for i, t in zip(targets, tangents):
        g = ct.get(i.value)
        if g is None:
            continue
        axes = list(range(len(i.value.shape)))
        dot = b.sum(b.mul(g, t.value), axes=axes) if axes else b.mul(g, t.value)
        total = dot if total is None else b.add(total, dot)
    if total is None:
        total = b.op("full", value=0.0, dtype=graph.output(of).value.dtype.value, shape=())
    first = graph.replace(inputs=graph.inputs + tangents, ops=graph.ops + b.ops,
                          outputs=graph.outputs + [Output("grad_dot_tangent", total)])
    b2 = Builder()
    ct2 = gradients(first, total, [i.value for i in targets], b2)
    outs = list(graph.outputs)
    for i in targets:
        h = ct2.get(i.value)
        if h is None:
            h = b2.zeros_like(i.value)
        outs.append(Output("hvp." + i.name, h))
    return first.replace(ops=first.ops + b2.ops, outputs=outs)
