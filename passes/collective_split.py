"""Split a step at its collectives: the ops before the allreduces, and the ops after them."""

from __future__ import annotations

from dataclasses import dataclass

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Op, Output, Value, clone
from passes.memory import BUCKET_PREFIX


@dataclass(frozen=True)
class SplitStep:
    """`local` computes each rank's partial values; the runtime reduces them over the ranks and
    `update` consumes the results. `reduced[k]` names local's output k and update's input k, with
    its reduction; `carried` names values local computes that update needs unreduced."""

    local: Graph
    update: Graph
    reduced: list[tuple[str, str]]  # (name, reduce kind); names start with BUCKET_PREFIX
    carried: list[str]


def _closure(graph: Graph, roots: list[Value]) -> set[int]:
    """Indices of the ops that `roots` depend on."""
    index = {id(r): i for i, op in enumerate(graph.ops) for r in op.results}
    need: set[int] = set()
    stack = [id(v) for v in roots]
    while stack:
        i = index.get(stack.pop())
        if i is None or i in need:
            continue
        need.add(i)
        stack.extend(id(v) for v in graph.ops[i].operands)
    return need


def split_at_collectives(graph: Graph) -> SplitStep:
    """Partition a graph with allreduce ops into a local graph and an update graph (a pure function:
    the input graph is cloned first and never changed)."""
    g = clone(graph)
    collectives = [op for op in g.ops if op.name == "allreduce"]
    if not collectives:
        raise MlpcError("split_at_collectives: the graph has no allreduce ops")
    local_idx = _closure(g, [c.operands[0] for c in collectives])
    if any(g.ops[i].name == "allreduce" for i in local_idx):
        raise MlpcError("an allreduce depends on another allreduce: chained collectives are not supported")
    local_ops = [op for i, op in enumerate(g.ops) if i in local_idx]
    update_ops = [op for i, op in enumerate(g.ops) if i not in local_idx and op.name != "allreduce"]
    produced_locally = {id(r) for op in local_ops for r in op.results}
    mapping: dict[int, Value] = {}
    reduced: list[tuple[str, str]] = []
    local_outputs: list[Output] = []
    update_inputs: list[Input] = []
    for k, c in enumerate(collectives):
        name = f"{BUCKET_PREFIX}{k}"  # the memory plan puts these in one contiguous bucket
        local_outputs.append(Output(name, c.operands[0]))
        v = Value(c.result.type, name)
        mapping[id(c.result)] = v
        update_inputs.append(Input(name, v, "data"))
        reduced.append((name, str(c.attrs["reduce"])))
    carried: list[str] = []
    uses = [v for op in update_ops for v in op.operands] + [o.value for o in g.outputs]
    for v in uses:
        if id(v) in produced_locally and id(v) not in mapping:
            name = f"carry.{len(carried)}"
            local_outputs.append(Output(name, v))
            nv = Value(v.type, name)
            mapping[id(v)] = nv
            update_inputs.append(Input(name, nv, "data"))
            carried.append(name)
    local = _with_used_inputs(g, local_ops, local_outputs, g.name + "_local")
    remapped = [Op(op.name, [mapping.get(id(v), v) for v in op.operands], op.results, dict(op.attrs), op.loc)
                for op in update_ops]
    outs = [Output(o.name, mapping.get(id(o.value), o.value)) for o in g.outputs]
    update = _with_used_inputs(g, remapped, outs, g.name + "_update", update_inputs)
    return SplitStep(clone(local), clone(update), reduced, carried)


def _with_used_inputs(g: Graph, ops: list[Op], outputs: list[Output], name: str,
                      extra: list[Input] | None = None) -> Graph:
    """A graph over `ops` whose inputs are the original inputs they read (in order), plus `extra`."""
    used = {id(v) for op in ops for v in op.operands} | {id(o.value) for o in outputs}
    inputs = [i for i in g.inputs if id(i.value) in used or _updates(i, outputs)]
    for op in ops:
        for r in op.results:
            r.producer = op
    return Graph(name, inputs + list(extra or []), ops, outputs)


def _updates(inp: Input, outputs: list[Output]) -> bool:
    return inp.role != "data" and any(o.name == inp.name for o in outputs)
