"""Training graphs built by hand with mlpc.ops.Builder, mirroring what autodiff + optimizer passes emit."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, get
from mlpc.ops.optim import inline_update
from mlpc.types import DType, TensorType, f32

ACTS = ("relu", "sigmoid", "tanh", "gelu", "leaky_relu", "none")


def grads(ops: list, of: Value, wrt: list[Value], b: Builder) -> dict[Value, Value]:
    """Reverse mode over the registry's VJP rules (same algorithm as passes/autodiff.py)."""
    depends = set(wrt)
    for op in ops:
        if any(v in depends for v in op.operands):
            depends.update(op.results)
    ct: dict[Value, Value] = {of: b.op("full", value=1.0, dtype="f32", shape=())}
    for op in reversed(ops):
        cts = [ct.get(r) for r in op.results]
        if all(c is None for c in cts) or not any(v in depends for v in op.operands):
            continue
        cts = [c if c is not None else b.zeros_like(r) for c, r in zip(cts, op.results)]
        for v, g in zip(op.operands, get(op.name).vjp(b, op, cts)):
            if g is None or v not in depends:
                continue
            ct[v] = b.add(ct[v], g) if v in ct else g
    return ct


def mlp_train_graph(sizes: list[int], batch: int, act: str = "relu", loss: str = "ce",
                    opt: str = "adam", opt_attrs: dict[str, Any] | None = None) -> Graph:
    """x -> [Linear -> act]* -> Linear -> loss; backward; one update op per param; t += 1."""
    b = Builder()
    x = Value(f32(batch, sizes[0]), "x")
    y = Value(TensorType(DType.i32, (batch,)), "y") if loss == "ce" else Value(f32(batch, sizes[-1]), "y")
    inputs = [Input("x", x), Input("y", y)]
    params: list[Input] = []
    h = x
    for li, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = Value(f32(n_in, n_out), f"{li}.weight")
        bias = Value(f32(n_out), f"{li}.bias")
        params += [Input(f"{li}.weight", w, "param"), Input(f"{li}.bias", bias, "param")]
        h = b.add(b.matmul(h, w), bias)
        if li < len(sizes) - 2 and act != "none":
            h = b.op(act, h)
    lossv = b.softmax_cross_entropy(h, y) if loss == "ce" else b.mse(h, y)
    fwd_ops = list(b.ops)
    ct = grads(fwd_ops, lossv, [p.value for p in params], b)
    outs = [Output("loss", lossv)]
    t = Value(TensorType(DType.i32, ()), "t")
    state: list[Input] = []
    attrs = dict(opt_attrs or {})
    consts: dict = {}
    for p in params:
        g = ct[p.value]
        if opt == "adam":
            m = Value(p.value.type, "adam.m." + p.name)
            v = Value(p.value.type, "adam.v." + p.name)
            state += [Input("adam.m." + p.name, m, "state"), Input("adam.v." + p.name, v, "state")]
            pn, mn, vn = inline_update(b, "adam_update", p.value, g, [m, v], t, attrs, consts)
            outs += [Output(p.name, pn), Output("adam.m." + p.name, mn), Output("adam.v." + p.name, vn)]
        elif opt == "sgd":
            if attrs.get("momentum"):
                buf = Value(p.value.type, "sgd.buf." + p.name)
                state.append(Input("sgd.buf." + p.name, buf, "state"))
                pn, bn = inline_update(b, "sgd_update", p.value, g, [buf], t, attrs, consts)
                outs += [Output(p.name, pn), Output("sgd.buf." + p.name, bn)]
            else:
                outs.append(Output(p.name, inline_update(b, "sgd_update", p.value, g, [], t, attrs, consts)))
        elif opt == "momentum":
            u = Value(p.value.type, "momentum.u." + p.name)
            state.append(Input("momentum.u." + p.name, u, "state"))
            pn, un = inline_update(b, "momentum_update", p.value, g, [u], t, attrs, consts)
            outs += [Output(p.name, pn), Output("momentum.u." + p.name, un)]
        else:
            raise ValueError(opt)
    outs.append(Output("t", b.add(t, b.op("full", value=1.0, dtype="i32", shape=()))))
    return Graph("step", inputs + params + state + [Input("t", t, "state")], b.ops, outs)


def init_state(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in g.inputs:
        if i.role == "param":
            fan_in = i.value.shape[0] if len(i.value.shape) == 2 else 1
            out[i.name] = (rng.standard_normal(i.value.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif i.role == "state":
            out[i.name] = np.zeros(i.value.shape, i.value.dtype.numpy)
    return out


def random_data(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in g.inputs:
        if i.role != "data":
            continue
        if i.value.dtype == DType.i32:
            classes = next(op.operands[0].shape[1] for op in g.ops
                           if op.name == "softmax_cross_entropy" and op.operands[1] is i.value)
            out[i.name] = rng.integers(0, classes, i.value.shape).astype(np.int32)
        else:
            out[i.name] = rng.standard_normal(i.value.shape).astype(np.float32)
    return out


def run_both(g: Graph, state: dict[str, np.ndarray], data: dict[str, np.ndarray], steps: int = 1,
             target: Any = None, datas: list[dict[str, np.ndarray]] | None = None) -> list[tuple[dict, ...]]:
    """Run `steps` steps with the llvm backend and the interpreter; per step (llvm outs, ref outs,
    llvm state, ref state)."""
    from mlpc.interpreter import interpret
    from runtime.llvm_backend import aligned_copy, lower_graph

    compiled = lower_graph(g, target=target, use_cache=False)
    st = {k: aligned_copy(v) for k, v in state.items()}
    ref = {k: v.copy() for k, v in state.items()}
    out = []
    for i in range(steps):
        d = datas[i] if datas else data
        got = compiled.run(st, d)
        r = interpret(g, {**ref, **d})
        for k in ref:
            if k in r:
                ref[k] = r[k]
        want = {k: v for k, v in r.items() if k not in ref}
        out.append((got, want, {k: v.copy() for k, v in st.items()}, {k: v.copy() for k, v in ref.items()}))
    return out


def assert_close(got: dict, want: dict, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k], np.float64), np.asarray(want[k], np.float64),
                                   rtol=rtol, atol=atol, err_msg=k)
