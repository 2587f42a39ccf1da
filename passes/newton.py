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
from mlpc.ir import Graph, Input, Op, Output, Value
from mlpc.ops import Builder
from passes.autodiff import gradients
from passes.batching import vectorize
from passes.manager import register_pass

HESSIAN_BYTES_LIMIT = 4 << 30
CHUNK_BYTES = 256 << 20


def _flat(b: Builder, v: Value) -> Value:
    return v if v.type.rank == 1 else b.reshape(v, shape=(v.type.size,))


def _needed(ops: list[Op], outputs: list[Value]) -> list[Op]:
    """The ops some value in `outputs` depends on (autodiff also emits cotangents nobody reads)."""
    live = set(outputs)
    keep = []
    for op in reversed(ops):
        if any(r in live for r in op.results):
            keep.append(op)
            live.update(op.operands)
    keep.reverse()
    return keep


def chunk_size(ops: list[Op], tangent: Value, chunk_bytes: int) -> int:
    """How many basis tangents to vectorize at once so that no batched value exceeds `chunk_bytes`."""
    depends = {tangent}
    largest = 1
    for op in ops:
        if any(v in depends for v in op.operands):
            depends.update(op.results)
            largest = max(largest, *(r.type.nbytes for r in op.results))
    return max(1, chunk_bytes // largest)


def _block_row(b: Builder, params: list[Value], ct2: dict[Value, Value], done: dict[Value, Value],
               k: int) -> Value:
    """The [k, N] rows of H for k basis tangents, from the vectorized HVP results."""
    blocks = []
    for q in params:
        h = ct2.get(q)
        if h is None:
            blk = b.op("full", value=0.0, dtype=q.dtype.value, shape=(k, q.type.size))
        else:
            hq = done.get(h)
            if hq is None:  # independent of the tangent: broadcast
                hq = b.broadcast_to(h, shape=(k,) + q.shape)
            blk = b.reshape(hq, shape=(k, q.type.size)) if q.type.rank != 1 else hq
        blocks.append(blk)
    return blocks[0] if len(blocks) == 1 else b.concat(*blocks, axis=1)


def hessian_value(graph: Graph, of: Value, wrt: list[Input], b: Builder,
                  grads: dict[Value, Value] | None = None, chunk_bytes: int = CHUNK_BYTES) -> Value:
    """Emit into `b` ops computing the [N, N] Hessian of scalar `of` w.r.t. the inputs `wrt`
    (flattened in order). `grads` may give existing first-derivative values by input value.
    Basis tangents are vectorized in chunks so that no batched intermediate exceeds `chunk_bytes`."""
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
        hvp_ops = _needed(hb.ops, [ct2[q] for q in params if q in ct2])  # drop cotangents of data inputs
        k = chunk_size(hvp_ops, tangent, chunk_bytes)
        eye = b.eye(n=n_p, dtype=p.dtype.value)
        chunks = []
        for start in range(0, n_p, k):
            stop = min(n_p, start + k)
            basis = eye if stop - start == n_p else b.slice(eye, axis=0, start=start, stop=stop)
            if p.type.rank != 1:
                basis = b.reshape(basis, shape=(stop - start,) + p.shape)
            done = vectorize(hvp_ops, {tangent: basis}, stop - start, b, emit_unbatched=start == 0)
            chunks.append(_block_row(b, params, ct2, done, stop - start))
        rows.append(chunks[0] if len(chunks) == 1 else b.concat(*chunks, axis=0))
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
def hessian(graph: Graph, of: str = "loss", wrt: str | list[str] | None = None, max_params: int = 20000,
            chunk_bytes: int = CHUNK_BYTES) -> Graph:
    """Add output `hessian` [N, N]: the exact Hessian of output `of` w.r.t. the params (or `wrt`), flattened."""
    from passes.autodiff import _names

    targets = _names(wrt, graph)
    check_size(targets, max_params, "the hessian pass")
    b = Builder()
    h = hessian_value(graph, graph.output(of).value, targets, b, chunk_bytes=chunk_bytes)
    return graph.replace(ops=graph.ops + b.ops, outputs=graph.outputs + [Output("hessian", h)])


@register_pass("newton")
def newton(graph: Graph, lr: float = 1.0, damping: float = 0.0, max_params: int = 20000,
           method: str = "lu", of: str = "loss", chunk_bytes: int = CHUNK_BYTES) -> Graph:
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
    h = hessian_value(graph, graph.output(of).value, params, b, grads, chunk_bytes)
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
    from passes.optimizer import step_input

    step, new_inputs = step_input(graph)
    outs.append(Output("t", b.add(step.value, b.op("full", value=1.0, dtype="i32", shape=()))))
    return graph.replace(inputs=graph.inputs + new_inputs, ops=graph.ops + b.ops, outputs=outs)
