"""Probe pass: extra outputs with per-layer activation norms and per-parameter gradient norms.

After the pass the graph also returns

* `probe.act.<k>`, k = 0..L: the Frobenius norm over the batch of the activation after k linear
  layers. k = 0 is the input of the first linear layer (the lecture's Z_1 = X); k >= 1 is the output
  of linear layer k after its activation, sigma_k(Z_k W_k + b_k) (the lecture's Z_{k+1}); for the last
  layer, which has no activation, it is the logits.
* `probe.grad.<param>`: the Frobenius norm of d loss / d param for every param input.

Linear layers are found in the traced graph, not in the model: a linear layer is a forward `matmul`
(an op the loss depends on, i.e. not part of the backward pass) whose right operand is a param
input; its output is followed through a single `add` of a param (the bias) and a single activation
op when those are its only users. The pass runs before or after `autodiff`: it reuses `grad.<p>`
outputs when present and differentiates the loss itself otherwise. Without the pass nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Op, Output, Value
from mlpc.ops import Builder, get
from passes.autodiff import gradients
from passes.manager import register_pass

ACT_PREFIX = "probe.act."
GRAD_PREFIX = "probe.grad."


@dataclass(frozen=True)
class Layer:
    """One linear layer of the traced graph: its weight's name, input and (activated) output."""

    index: int  # 1-based, like the lecture's W_1 .. W_L
    weight: str
    input: Value
    output: Value


def forward_ops(graph: Graph, of: str) -> list[Op]:
    """The ops output `of` depends on, in graph order (after autodiff: the forward pass only)."""
    live = {graph.output(of).value}
    keep = []
    for op in reversed(graph.ops):
        if any(r in live for r in op.results):
            keep.append(op)
            live.update(op.operands)
    keep.reverse()
    return keep


def linear_layers(graph: Graph, of: str = "loss") -> list[Layer]:
    """The forward linear layers in order, found as matmuls of a value by a param input."""
    params = {i.value: i.name for i in graph.inputs_with_role("param")}
    ops = forward_ops(graph, of)
    users: dict[Value, list[Op]] = {}
    for op in ops:
        for v in op.operands:
            users.setdefault(v, []).append(op)

    def only_user(v: Value) -> Op | None:
        u = users.get(v, [])
        return u[0] if len(u) == 1 else None

    layers: list[Layer] = []
    for op in ops:
        if op.name != "matmul" or op.operands[1] not in params or op.attrs.get("transpose_a"):
            continue
        out = op.result
        nxt = only_user(out)
        if nxt is not None and nxt.name == "add":
            other = nxt.operands[1] if nxt.operands[0] is out else nxt.operands[0]
            if other in params and other.type.rank == 1:
                out = nxt.result
                nxt = only_user(out)
        if nxt is not None and get(nxt.name).activation:
            out = nxt.result
        layers.append(Layer(len(layers) + 1, params[op.operands[1]], op.operands[0], out))
    return layers


def _norm(b: Builder, v: Value) -> Value:
    sq = b.square(v)
    total = b.sum(sq, axes=list(range(v.type.rank))) if v.type.rank else sq
    return b.sqrt(total)


@register_pass("probe")
def probe(graph: Graph, of: str = "loss", acts: bool = True, grads: bool = True) -> Graph:
    """Add outputs probe.act.<k> (activation norm after k layers) and probe.grad.<param> (gradient norm)."""
    if not graph.has_output(of):
        raise MlpcError(f"probe: the graph has no output {of!r} to probe")
    b = Builder()
    b.loc = ""
    outs = list(graph.outputs)
    if acts:
        layers = linear_layers(graph, of)
        if not layers:
            raise MlpcError("probe: found no linear layers (matmul by a param) in the graph")
        outs.append(Output(ACT_PREFIX + "0", _norm(b, layers[0].input)))
        for layer in layers:
            outs.append(Output(f"{ACT_PREFIX}{layer.index}", _norm(b, layer.output)))
    if grads:
        params = graph.inputs_with_role("param")
        missing = [p for p in params if not graph.has_output("grad." + p.name)]
        ct = gradients(graph, graph.output(of).value, [p.value for p in missing], b) if missing else {}
        for p in params:
            if graph.has_output("grad." + p.name):
                g = graph.output("grad." + p.name).value
            else:
                g = ct.get(p.value) or b.zeros_like(p.value)
            outs.append(Output(GRAD_PREFIX + p.name, _norm(b, g)))
    return graph.replace(ops=graph.ops + b.ops, outputs=outs)
