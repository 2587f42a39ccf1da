"""The NaN/Inf guard: a step whose loss or new parameters/state (hence gradients) are not all finite changes nothing."""

from __future__ import annotations

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Output, Value
from mlpc.ops import Builder
from passes.manager import register_pass

FLAG = "nonfinite"


def _poison_sum(b: Builder, v: Value) -> Value:
    """0 when every element of v is finite, NaN otherwise (x * 0 is NaN exactly for NaN and +-Inf)."""
    z = b.mul(v, b.scalar(0.0, v))
    return b.sum(z, axes=list(range(v.type.rank))) if v.type.rank else z


@register_pass("nan_guard")
def nan_guard(graph: Graph, of: str = "loss") -> Graph:
    """Select old param/state values unless loss, gradients and new values are finite; adds output `nonfinite`.

    `nonfinite` is 0.0 for a good step and NaN for a step that was rolled back. The selection happens in
    the graph, so a backend that updates buffers in place never writes non-finite values into them.
    """
    if graph.has_output(FLAG):
        raise MlpcError("nan_guard was applied twice")
    state_inputs = {i.name: i for i in graph.inputs if i.role in ("param", "state")}
    updates = [o for o in graph.outputs if o.name in state_inputs]
    if not updates:
        raise MlpcError("nan-guard needs a step graph with parameter/state outputs (run an optimizer pass first)")
    # The gradients need no check of their own: every one feeds an update (p - lr*g, m = b*m + (1-b)*g, ...)
    # and IEEE arithmetic carries NaN and Inf into it (Inf * 0 is NaN too), so a non-finite gradient always
    # makes a new parameter or optimizer state non-finite.
    checked: list[Value] = [graph.output(of).value]
    checked += [o.value for o in updates if o.value.dtype.is_float]
    b = Builder()
    total: Value | None = None
    flag_dtype = graph.output(of).value.type
    for v in dict.fromkeys(checked):  # unique, in order
        if not v.dtype.is_float:
            continue
        s = _poison_sum(b, v)
        if s.type != flag_dtype:
            s = b.cast(s, dtype=flag_dtype.dtype.value)
        total = s if total is None else b.add(total, s)
    assert total is not None
    ok = b.equal(total, b.scalar(0.0, total))
    outs = []
    for o in graph.outputs:
        if o.name in state_inputs:
            outs.append(Output(o.name, b.where(ok, o.value, state_inputs[o.name].value)))
        else:
            outs.append(o)
    outs.append(Output(FLAG, total))
    return graph.replace(ops=graph.ops + b.ops, outputs=outs)
