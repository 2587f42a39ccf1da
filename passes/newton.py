"""Exact Hessians in the graph (second-order autodiff, vectorized) and the Newton optimizer pass.

The Hessian is built without finite differences and without one graph run per column: for each
parameter block P, reverse mode is applied to s_P = <grad_P, V> (a Hessian-vector product graph in a
symbolic tangent V), and that HVP graph is vectorized (passes/batching.py) over all n_P basis tangents
at once, V = eye(n_P) reshaped like P. The result [n_P, *shape_q] for every parameter q is block row
P of H. Blocks are joined with `concat` into one [N, N] value (symmetric up to rounding: the LU
solve does not need symmetry, the Cholesky solve reads only the lower triangle).
"""

from __future__ import annotations

from mlpc.errors import MlpcError
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.ops.optim import STEP_TYPE
from passes.autodiff import gradients
from passes.batching import vectorize
from passes.manager import register_pass

HESSIAN_BYTES_LIMIT = 4 << 30


def _flat(b: Builder, v: Value) -> Value:
    return v if v.type.rank == 1 else b.reshape(v, shape=(v.type.size,))


def hessian_value(graph: Graph, of: Value, wrt: list[Input], b: Builder,
                  grads: dict[Value, Value] | None = None) -> Value:
    """Emit into `b` ops computing the [N, N] Hessian of scalar `of` w.r.t. the inputs `wrt`
    (flattened in order). `grads` may give existing first-derivative values by input value."""
    params = [i.value for i in wrt]
    ops = list(graph.ops)
    if grads is None or any(p not in grads for p in params):
        first = Builder()
        ct = gradients(graph, of, params, first)
        grads = {p: ct[p] if p in ct else first.zeros_like(p) for p in params}
        b.ops.extend(first.ops)
        ops += first.ops
    rows = []
    for p in params:
        n_p = p.type.size
        tangent = Value(p.type, "tangent")
        hb = Builder()
        dot = hb.sum(hb.mul(grads[p], tangent), axes=list(range(p.type.rank))) if p.type.rank else \
            hb.mul(grads[p], tangent)
        with_dot = graph.replace(ops=ops + hb.ops)
        ct2 = gradients(with_dot, dot, params, hb)
        basis = b.eye(n=n_p, dtype=p.dtype.value)
        if p.type.rank != 1:
            basis = b.reshape(basis, shape=(n_p,) + p.shape)
        done = vectorize(hb.ops, {tangent: basis}, n_p, b)
        blocks = []
        for q in params:
            h = ct2.get(q)
            if h is None:
                blk = b.op("full", value=0.0, dtype=q.dtype.value, shape=(n_p, q.type.size))
            else:
                hq = done.get(h)
                if hq is None:  # independent of the tangent: broadcast
                    hq = b.broadcast_to(h, shape=(n_p,) + q.shape)
                blk = b.reshape(hq, shape=(n_p, q.type.size)) if q.type.rank != 1 else hq
            blocks.append(blk)
        rows.append(blocks[0] if len(blocks) == 1 else b.concat(*blocks, axis=1))
    return rows[0] if len(rows) == 1 else b.concat(*rows, axis=0)


def _param_count(inputs: list[Input]) -> int:
    return sum(i.value.type.size for i in inputs)


def check_size(inputs: list[Input], max_params: int, who: str) -> int:
    """The number of parameters, or a clear error when the Hessian would be too large."""
    n = _param_count(inputs)
    nbytes = 8 * n * n
    if n > max_params or nbytes > HESSIAN_BYTES_LIMIT:
        raise MlpcError(f"{who} needs the full {n}x{n} Hessian ({nbytes / 2**30:.1f} GiB in float64) but the "
                        f"model has {n} parameters, more than max_params={max_params}; Newton's method is only "
                        "for small models (use a first-order optimizer, or raise max_params if memory allows)")
    return n


@register_pass("hessian")
def hessian(graph: Graph, of: str = "loss", wrt: str | list[str] | None = None, max_params: int = 20000) -> Graph:
    """Add output `hessian` [N, N]: the exact Hessian of output `of` w.r.t. the params (or `wrt`), flattened."""
    from passes.autodiff import _names

    targets = _names(wrt, graph)
    check_size(targets, max_params, "the hessian pass")
    b = Builder()
    h = hessian_value(graph, graph.output(of).value, targets, b)
    return graph.replace(ops=graph.ops + b.ops, outputs=graph.outputs + [Output("hessian", h)])


@register_pass("newton")
def newton(graph: Graph, lr: float = 1.0, damping: float = 0.0, max_params: int = 20000,
           method: str = "lu", of: str = "loss") -> Graph:
    """Newton's method: theta -= lr (H + damping I)^-1 grad, H the exact Hessian (small models only)."""
    if lr <= 0 or damping < 0:
        raise MlpcError(f"newton needs lr > 0 and damping >= 0, got lr={lr}, damping={damping}")
    params = graph.inputs_with_role("param")
    if not params:
        raise MlpcError("newton found no param inputs to update")
    missing = [p.name for p in params if not graph.has_output("grad." + p.name)]
    if missing:
        raise MlpcError(f"newton needs output grad.{missing[0]}: run autodiff first")
    check_size(params, max_params, "optim.Newton")
    grads = {p.value: graph.output("grad." + p.name).value for p in params}
    b = Builder()
    h = hessian_value(graph, graph.output(of).value, params, b, grads)
    flat = [_flat(b, grads[p.value]) for p in params]
    g = flat[0] if len(flat) == 1 else b.concat(*flat, axis=0)
    delta = b.linear_solve(h, g, shift=float(damping), method=method)
    outs = [o for o in graph.outputs if not o.name.startswith("grad.")]
    start = 0
    rate = b.scalar(lr, delta)
    for p in params:
        n = p.value.type.size
        d = delta if len(params) == 1 else b.slice(delta, axis=0, start=start, stop=start + n)
        if p.value.type.rank != 1:
            d = b.reshape(d, shape=p.value.shape)
        outs.append(Output(p.name, b.sub(p.value, b.mul(d, rate))))
        start += n
    step = Input("t", Value(STEP_TYPE, "t"), "state")
    outs.append(Output("t", b.add(step.value, b.op("full", value=1.0, dtype="i32", shape=()))))
    return graph.replace(inputs=graph.inputs + [step], ops=graph.ops + b.ops, outputs=outs)
