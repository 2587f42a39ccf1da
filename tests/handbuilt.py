"""Hand-built MLP training-step graphs (forward, backward, optimizer) shaped like autodiff's output."""

from __future__ import annotations

import numpy as np

from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, get
from mlpc.ops.optim import inline_update
from mlpc.types import DType, TensorType, f32


def mlp_step_graph(sizes: list[int], batch: int, loss: str = "sce", optimizer: str = "adam",
                   activation: str = "relu", bias: bool = True, opt_attrs: dict | None = None) -> Graph:
    """One training step of an MLP with layer widths `sizes`: x [B, sizes[0]] -> sizes[-1] outputs.

    Params are "i.weight" [in, out] and "i.bias" [out]; the loss is softmax cross-entropy against
    i32 labels ("sce") or MSE against f32 targets ("mse"); the optimizer is adam, sgd (with
    momentum) or momentum. Outputs: "loss", then the new value of every param and state input."""
    b = Builder()
    x = Value(f32(batch, sizes[0]), "x")
    y = Value(TensorType(DType.i32, (batch,)) if loss == "sce" else f32(batch, sizes[-1]), "y")
    inputs = [Input("x", x), Input("y", y)]
    weights, biases = [], []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        w = Value(f32(n_in, n_out), f"w{i}")
        inputs.append(Input(f"{2 * i}.weight", w, "param"))
        weights.append(w)
        if bias:
            bv = Value(f32(n_out), f"b{i}")
            inputs.append(Input(f"{2 * i}.bias", bv, "param"))
            biases.append(bv)
    acts = [x]
    act_ops = []
    pre = []
    h = x
    layers = len(weights)
    for i in range(layers):
        z = b.matmul(h, weights[i])
        if bias:
            z = b.add(z, biases[i])
        pre.append(z)
        if i < layers - 1:
            h = getattr(b, activation)(z)
            acts.append(h)
            act_ops.append(b.ops[-1])
    out = pre[-1]
    one = b.full(value=1.0, dtype="f32", shape=())
    if loss == "sce":
        lval = b.softmax_cross_entropy(out, y)
        dz = b.softmax_cross_entropy_grad(out, y, one)
    else:
        d = b.sub(out, y)
        lval = b.mean(b.square(d), axes=[0, 1])
        scale = b.full(value=2.0 / out.type.size, dtype="f32", shape=())
        dz = b.mul(b.mul(d, scale), one)
    grads: dict[Value, Value] = {}
    for i in reversed(range(layers)):
        grads[weights[i]] = b.matmul(acts[i], dz, transpose_a=True)
        if bias:
            grads[biases[i]] = b.sum(dz, axes=[0])
        if i > 0:
            dh = b.matmul(dz, weights[i], transpose_b=True)
            vjp = get(activation).vjp
            assert vjp is not None
            dz = vjp(b, act_ops[i - 1], [dh])[0]  # the activation's registered VJP
    t = Value(TensorType(DType.i32, ()), "t")
    outputs = [Output("loss", lval)]
    state_inputs = []
    attrs = dict(opt_attrs or {})
    consts: dict = {}
    params = [(inp.name, inp.value) for inp in inputs if inp.role == "param"]
    for name, p in params:
        g = grads[p]
        if optimizer == "adam":
            m = Value(p.type, f"m.{name}")
            v = Value(p.type, f"v.{name}")
            state_inputs += [Input(f"adam.m.{name}", m, "state"), Input(f"adam.v.{name}", v, "state")]
            pn, mn, vn = inline_update(b, "adam_update", p, g, [m, v], t, attrs, consts)
            outputs += [Output(name, pn), Output(f"adam.m.{name}", mn), Output(f"adam.v.{name}", vn)]
        elif optimizer == "sgd" and not attrs.get("momentum", 0.9):
            outputs.append(Output(name, inline_update(b, "sgd_update", p, g, [], t, attrs, consts)))
        elif optimizer == "sgd":
            buf = Value(p.type, f"buf.{name}")
            state_inputs.append(Input(f"sgd.buf.{name}", buf, "state"))
            pn, bn = inline_update(b, "sgd_update", p, g, [buf], t, {"momentum": 0.9, **attrs}, consts)
            outputs += [Output(name, pn), Output(f"sgd.buf.{name}", bn)]
        else:
            u = Value(p.type, f"u.{name}")
            state_inputs.append(Input(f"momentum.u.{name}", u, "state"))
            pn, un = inline_update(b, "momentum_update", p, g, [u], t, attrs, consts)
            outputs += [Output(name, pn), Output(f"momentum.u.{name}", un)]
    one_i = b.full(value=1.0, dtype="i32", shape=())
    outputs.append(Output("t", b.add(t, one_i)))
    return Graph("step", inputs + state_inputs + [Input("t", t, "state")], b.ops, outputs)


def mlp_predict_graph(sizes: list[int], batch: int, activation: str = "relu", bias: bool = True) -> Graph:
    """The forward pass alone: x -> "logits"."""
    b = Builder()
    x = Value(f32(batch, sizes[0]), "x")
    inputs = [Input("x", x)]
    h = x
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        w = Value(f32(n_in, n_out), f"w{i}")
        inputs.append(Input(f"{2 * i}.weight", w, "param"))
        h = b.matmul(h, w)
        if bias:
            bv = Value(f32(n_out), f"b{i}")
            inputs.append(Input(f"{2 * i}.bias", bv, "param"))
            h = b.add(h, bv)
        if i < len(sizes) - 2:
            h = getattr(b, activation)(h)
    return Graph("predict", inputs, b.ops, [Output("logits", h)])


def random_inputs(graph: Graph, seed: int = 0, classes: int | None = None) -> dict[str, np.ndarray]:
    """Random values for every input: He-scaled weights, small biases, zero optimizer state, t = 0."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for inp in graph.inputs:
        t = inp.value.type
        if inp.name == "t":
            out[inp.name] = np.zeros((), np.int32)
        elif t.dtype == DType.i32:
            out[inp.name] = rng.integers(0, classes or 10, size=t.shape).astype(np.int32)
        elif inp.role == "state":
            out[inp.name] = (np.abs(rng.standard_normal(t.shape)) * 0.01).astype(np.float32)
        elif inp.role == "param" and len(t.shape) == 2:
            out[inp.name] = (rng.standard_normal(t.shape) * np.sqrt(2.0 / t.shape[0])).astype(np.float32)
        else:
            out[inp.name] = (rng.standard_normal(t.shape) * 0.5).astype(np.float32)
    return out
