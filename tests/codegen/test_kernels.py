"""Non-gemm kernels vs the interpreter: elementwise chains with broadcasting, reductions, row-wise ops,
softmax cross-entropy forward+backward, MSE, transpose, fill and every optimizer rule."""

import numpy as np
import pytest

from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder, all_ops
from mlpc.ops.optim import split_attrs
from mlpc.types import DType, TensorType, f32
from tests.handgraphs import assert_close, run_both
from tests.op_cases import cases

# every unary elementwise op with its sample attributes (tests/op_cases.py), so new ops join
UNARY = {c.op: (c.attrs, c.domain) for c in cases("f32") if len(c.operands) == 1
         and all_ops()[c.op].kind == "elementwise" and c.op != "cast"}
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]


def graph(inputs, build, name="k"):
    b = Builder()
    vals = {n: Value(t, n) for n, t in inputs.items()}
    outs = build(b, vals)
    return Graph(name, [Input(n, v) for n, v in vals.items()], b.ops, [Output(k, v) for k, v in outs.items()])


def rand(g, seed=0, positive=()):
    rng = np.random.default_rng(seed)
    out = {}
    for i in g.inputs:
        t = i.value.type
        if t.dtype == DType.i32:
            out[i.name] = rng.integers(0, 5, t.shape).astype(np.int32)
        else:
            x = rng.standard_normal(t.shape).astype(np.float32) * 3
            out[i.name] = np.abs(x) + 0.1 if i.name in positive else x
    return out


def check(g, data, rtol=2e-5, atol=2e-6, **kw):
    (got, want, _, _), = run_both(g, {}, data, **kw)
    assert_close(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", [(1,), (17,), (3, 129), (127, 5)])
def test_unary_ops(shape):
    def build(b, v):
        return {u: b.op(u, v["p"] if domain == "positive" else v["x"], **attrs) for u, (attrs, domain) in UNARY.items()}
    g = graph({"x": f32(*shape), "p": f32(*shape)}, build)
    check(g, rand(g, positive=("p",)), rtol=3e-6, atol=3e-6)


@pytest.mark.parametrize("sa,sb", [((17, 3), (17, 3)), ((17, 3), (3,)), ((17, 3), (17, 1)), ((1, 129), (127, 1)),
                                   ((), (5, 4)), ((2, 3, 4), (3, 1))])
def test_binary_ops_with_broadcasting(sa, sb):
    def build(b, v):
        out = {n: b.op(n, v["a"], v["b"]) for n in BINARY}
        out["where"] = b.where(b.greater(v["a"], v["b"]), v["a"], b.neg(v["b"]))
        out["cmp"] = b.cast(b.less_equal(v["a"], v["b"]), dtype="f32")
        return out
    g = graph({"a": f32(*sa), "b": f32(*sb)}, build)
    check(g, rand(g, 1))


def test_chain_grads_pow_cast_and_i32():
    def build(b, v):
        x, g = v["x"], v["g"]
        return {"rg": b.relu_grad(x, g), "lg": b.leaky_relu_grad(x, g, alpha=0.2),
                "pw": b.pow(b.abs(x), exponent=1.7), "p3": b.pow(x, exponent=3.0),
                "i": b.add(v["i"], b.op("full", value=2.0, dtype="i32", shape=())),
                "f": b.cast(v["i"], dtype="f32"), "bc": b.broadcast_to(v["r"], shape=(9, 17)),
                "rs": b.reshape(x, shape=(17, 9)), "c": b.mul(x, b.scalar(0.5, x))}
    g = graph({"x": f32(9, 17), "g": f32(9, 17), "i": TensorType(DType.i32, (9, 17)), "r": f32(17)}, build)
    check(g, rand(g, 2), rtol=1e-5)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@pytest.mark.parametrize("axes,keep", [((0,), False), ((1,), True), ((0, 1), False), ((-1,), False), ((0, 2), True)])
def test_reductions(op, axes, keep):
    shape = (3, 17, 5) if 2 in axes or len(axes) == 1 else (17, 33)
    g = graph({"x": f32(*shape)}, lambda b, v: {"r": b.op(op, v["x"], axes=list(axes), keepdims=keep)})
    check(g, rand(g, 3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,cols", [(1, 10), (17, 3), (129, 127)])
def test_rowwise_and_loss_kernels(rows, cols):
    def build(b, v):
        x, y = v["x"], v["y"]
        one = b.op("full", value=1.0, dtype="f32", shape=())
        d = b.softmax_cross_entropy_grad(x, y, b.mul(one, v["s"]))
        return {"sm": b.softmax(x), "lsm": b.log_softmax(x), "oh": b.one_hot(y, num_classes=cols),
                "loss": b.softmax_cross_entropy(x, y), "d": d, "db": b.sum(d, axes=[0]),
                "mse": b.mse(x, v["t"]), "tr": b.transpose(x), "z": b.zeros_like(x)}
    g = graph({"x": f32(rows, cols), "y": TensorType(DType.i32, (rows,)), "t": f32(rows, cols), "s": f32()}, build)
    data = rand(g, 4)
    data["y"] = np.random.default_rng(5).integers(0, cols, rows).astype(np.int32)
    check(g, data, rtol=1e-5, atol=1e-6)


def test_softmax_ce_fuses_forward_backward_and_bias_grad():
    from passes.fusion import fuse

    def build(b, v):
        loss = b.softmax_cross_entropy(v["x"], v["y"])
        d = b.softmax_cross_entropy_grad(v["x"], v["y"], b.op("full", value=1.0, dtype="f32", shape=()))
        return {"loss": loss, "db": b.sum(d, axes=[0]), "d": d}
    g = graph({"x": f32(7, 3), "y": TensorType(DType.i32, (7,))}, build)
    kinds = [k.kind for k in fuse(g).kernels]
    assert kinds == ["softmax_ce"]
    data = rand(g, 6)
    data["y"] = data["y"] % 3
    check(g, data)


OPTIMIZERS = [
    ("adam_update", 2, {}), ("adam_update", 2, {"bias_correction": False, "eps": 1e-6}),
    ("adam_update", 2, {"weight_decay": 0.1}), ("adam_update", 2, {"weight_decay": 0.1, "decoupled": True}),
    ("sgd_update", 0, {"lr": 0.1}), ("sgd_update", 0, {"lr": 0.1, "weight_decay": 0.01}),
    ("sgd_update", 1, {"momentum": 0.9}), ("sgd_update", 1, {"momentum": 0.9, "nesterov": True, "dampening": 0.0}),
    ("sgd_update", 1, {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05}),
    ("momentum_update", 1, {"beta": 0.9}), ("momentum_update", 1, {"beta": 0.8, "unbiased": True}),
    ("adam_update", 2, {"clip": True, "gscale": 0.3, "weight_decay": 0.1}),
    ("sgd_update", 1, {"momentum": 0.9, "clip": True, "gscale": 0.5}),
]


@pytest.mark.parametrize("name,n_state,attrs", OPTIMIZERS)
def test_optimizer_rules_over_steps(name, n_state, attrs):
    shapes = [(17, 3), (129,), (1,)]
    b = Builder()
    t = Value(TensorType(DType.i32, ()), "t")
    op_attrs, values = split_attrs(name, attrs)  # hyperparameters are runtime inputs (role hyper)
    hyper = [Input(f"hyper.{k}", Value(f32(), f"hyper.{k}"), "hyper") for k in values]
    ins, outs = [], []
    for j, s in enumerate(shapes):
        p, g = Value(f32(*s), f"p{j}"), Value(f32(*s), f"g{j}")
        st = [Value(f32(*s), f"s{j}_{q}") for q in range(n_state)]
        ins += [Input(f"p{j}", p, "param"), Input(f"g{j}", g)] + [Input(v.hint, v, "state") for v in st]
        res = b.op(name, p, g, *st, t, *[h.value for h in hyper], **op_attrs)
        res = res if isinstance(res, tuple) else (res,)
        outs += [Output(f"p{j}", res[0])] + [Output(v.hint, r) for v, r in zip(st, res[1:])]
    outs.append(Output("t", b.add(t, b.op("full", value=1.0, dtype="i32", shape=()))))
    g = Graph("opt", ins + [Input("t", t, "state")] + hyper, b.ops, outs)
    rng = np.random.default_rng(7)
    state = {i.name: (rng.standard_normal(i.value.shape).astype(np.float32) if i.role == "param"
                      else np.zeros(i.value.shape, i.value.dtype.numpy)) for i in g.inputs if i.role != "data"}
    state.update({f"hyper.{k}": np.asarray(v, np.float32) for k, v in values.items()})
    datas = [{i.name: rng.standard_normal(i.value.shape).astype(np.float32) for i in g.inputs if i.role == "data"}
             for _ in range(4)]
    for _got, _want, st, ref in run_both(g, state, {}, steps=4, datas=datas):
        assert_close(st, ref, rtol=1e-5, atol=1e-6)


def test_broadcast_chain_with_inlined_constant():
    """Regression: a scalar constant inside a broadcasting (two-level loop) elementwise kernel."""
    g = graph({"x": f32(9, 17), "r": f32(17)},
              lambda b, v: {"o": b.mul(b.add(v["x"], v["r"]), b.scalar(0.5, v["x"]))})
    check(g, rand(g, 8))
