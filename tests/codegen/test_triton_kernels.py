"""Every generated Triton kernel family against the NumPy interpreter on small ragged shapes
(on the GPU when one is present, else under TRITON_INTERPRET=1)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.triton_check import compare, run_triton, select_device  # noqa: E402

DEVICE = select_device()
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # interpreter exp(-x)
TOL_SCALE = 5.0 if DEVICE == "cuda" else 1.0  # the GPU's exp/log/sqrt/div are approximate (a few ulp)

from mlpc.ir import Graph, Input, Output, Value  # noqa: E402
from mlpc.ops import Builder  # noqa: E402
from mlpc.ops.optim import split_attrs  # noqa: E402
from mlpc.types import DType, TensorType, f32  # noqa: E402

RNG = np.random.default_rng(1234)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def graph_of(build, **shapes: tuple[int, ...]) -> tuple[Graph, dict[str, np.ndarray]]:
    """A graph whose data inputs have the given shapes; build(b, values) returns named outputs."""
    b = Builder()
    values = {n: Value(f32(*s), n) for n, s in shapes.items()}
    outs = build(b, values)
    g = Graph("k", [Input(n, v) for n, v in values.items()], b.ops, [Output(n, v) for n, v in outs.items()])
    return g, {n: rand(*s) for n, s in shapes.items()}


def assert_close(errors: dict[str, float], tol: float) -> None:
    assert errors, "nothing was compared"
    tol *= TOL_SCALE
    bad = {k: e for k, e in errors.items() if not e <= tol}
    assert not bad, f"relative errors over {tol}: {bad}"


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_transposes(ta: bool, tb: bool) -> None:
    m, n, k = 17, 33, 65
    a = (k, m) if ta else (m, k)
    bshape = (n, k) if tb else (k, n)
    g, inp = graph_of(lambda b, v: {"c": b.matmul(v["a"], v["b"], transpose_a=ta, transpose_b=tb)},
                      a=a, b=bshape)
    assert_close(compare(g, inp), 1e-5)


@pytest.mark.parametrize("act", ["relu", "gelu", "sigmoid", "tanh", "leaky_relu"])
def test_matmul_bias_activation_epilogue(act: str) -> None:
    def build(b, v):
        z = b.add(b.matmul(v["x"], v["w"]), v["bias"])
        return {"h": getattr(b, act)(z)}

    g, inp = graph_of(build, x=(19, 24), w=(24, 40), bias=(40,))
    got, compiled = run_triton(g, inp)
    assert len(compiled.launches) == 1, "bias and activation must fuse into the matmul"
    assert_close(compare(g, inp), 1e-5)


def test_epilogue_stores_intermediates_and_reads_full_tiles() -> None:
    def build(b, v):
        z = b.matmul(v["g"], v["w"], transpose_b=True)
        d = b.relu_grad(v["h"], z)
        return {"z": z, "d": d, "col": b.mul(d, v["s"])}

    g, inp = graph_of(build, g=(21, 10), w=(30, 10), h=(21, 30), s=(21, 1))
    _, compiled = run_triton(g, inp)
    assert len(compiled.launches) == 1
    assert_close(compare(g, inp), 1e-5)


def test_split_k_matmul() -> None:
    g, inp = graph_of(lambda b, v: {"dw": b.matmul(v["x"], v["d"], transpose_a=True)}, x=(1100, 20), d=(1100, 12))
    _, compiled = run_triton(g, inp, sm_count=4)
    assert any(la.constexprs.get("SPLIT_K", 1) > 1 for la in compiled.launches), "split-K was not used"
    assert_close(compare(g, inp, sm_count=4), 1e-5)


@pytest.mark.parametrize("precision,tol", [("tf32", 5e-3), ("bf16", 3e-2)])
def test_matmul_reduced_precision(precision: str, tol: float) -> None:
    g, inp = graph_of(lambda b, v: {"c": b.relu(b.add(b.matmul(v["a"], v["b"]), v["c0"]))},
                      a=(33, 70), b=(70, 18), c0=(18,))
    assert_close(compare(g, inp, precision), tol)


def test_elementwise_chain_with_broadcasts() -> None:
    def build(b, v):
        s = b.full(value=0.5, dtype="f32", shape=())
        e = b.exp(b.mul(b.sub(v["x"], v["row"]), s))
        q = b.div(b.sqrt(b.add(b.square(e), v["col"])), b.abs(b.add(v["x"], s)))
        w = b.where(b.greater(v["x"], v["row"]), q, b.neg(b.log(b.add(e, s))))
        return {"w": w, "p": b.pow(b.maximum(v["x"], b.minimum(v["row"], s)), exponent=3.0)}

    g, inp = graph_of(build, x=(13, 29), row=(29,), col=(13, 1))
    inp["col"] = np.abs(inp["col"])
    _, compiled = run_triton(g, inp)
    # the [13,29] chain; minimum on the [29] tile; the ops that read it
    assert len(compiled.launches) == 3
    assert_close(compare(g, inp), 2e-6)


@pytest.mark.parametrize("op,axes,keepdims", [("sum", [0], False), ("sum", [1], True), ("mean", [0, 1], False),
                                              ("max", [0], False), ("mean", [1], False), ("sum", [-1], False)])
def test_reductions(op: str, axes: list[int], keepdims: bool) -> None:
    g, inp = graph_of(lambda b, v: {"r": getattr(b, op)(v["x"], axes=axes, keepdims=keepdims)}, x=(37, 21))
    assert_close(compare(g, inp), 2e-6)


def test_split_column_reduction() -> None:
    g, inp = graph_of(lambda b, v: {"r": b.sum(v["x"], axes=[0])}, x=(3000, 9))
    _, compiled = run_triton(g, inp, sm_count=4)
    assert len(compiled.launches) == 2, "a long column sum must split into two passes"
    assert_close(compare(g, inp, sm_count=4), 1e-5)  # 3000 fp32 terms summed in another order


def test_vector_and_scalar_reductions() -> None:
    g, inp = graph_of(lambda b, v: {"a": b.sum(v["v"], axes=[0]), "m": b.max(v["v"], axes=[0])}, v=(45,))
    assert_close(compare(g, inp), 2e-6)


def sce_graph(batch: int, classes: int, with_loss: bool, with_grad: bool, const_g: bool = True):
    b = Builder()
    logits = Value(f32(batch, classes), "logits")
    labels = Value(TensorType(DType.i32, (batch,)), "labels")
    inputs = [Input("logits", logits), Input("labels", labels)]
    outs = []
    if with_loss:
        outs.append(Output("loss", b.softmax_cross_entropy(logits, labels)))
    if with_grad:
        if const_g:
            gv = b.full(value=0.7, dtype="f32", shape=())
        else:
            gv = Value(f32(), "g")
            inputs.append(Input("g", gv))
        outs.append(Output("grad", b.softmax_cross_entropy_grad(logits, labels, gv)))
    inp = {"logits": rand(batch, classes) * 3, "labels": RNG.integers(0, classes, batch).astype(np.int32),
           "g": np.asarray(1.3, np.float32)}
    return Graph("sce", inputs, b.ops, outs), inp


@pytest.mark.parametrize("batch,classes,with_loss,with_grad,const_g", [
    (37, 10, True, True, True), (5, 3, True, False, True), (70, 33, False, True, False), (130, 300, True, True, False)])
def test_softmax_cross_entropy(batch: int, classes: int, with_loss: bool, with_grad: bool, const_g: bool) -> None:
    g, inp = sce_graph(batch, classes, with_loss, with_grad, const_g)
    inp = {i.name: inp[i.name] for i in g.inputs}
    _, compiled = run_triton(g, inp)
    sce = [la for la in compiled.launches if la.name.startswith("sce")]
    assert len(sce) == 1, "loss and gradient must share one row-wise kernel"
    assert_close(compare(g, inp), 3e-6)


def optimizer_graph(opname: str, attrs: dict, shapes: list[tuple[int, ...]], slots: int):
    """Update ops over several tensors; the hyperparameters are runtime inputs (role hyper)."""
    b = Builder()
    t = Value(TensorType(DType.i32, ()), "t")
    op_attrs, values = split_attrs(opname, attrs)
    hyper = [Input(f"hyper.{k}", Value(f32(), f"hyper.{k}"), "hyper") for k in values]
    inputs, outputs = [], []
    for i, s in enumerate(shapes):
        p, gr = Value(f32(*s), f"p{i}"), Value(f32(*s), f"g{i}")
        state = [Value(f32(*s), f"s{i}_{j}") for j in range(slots)]
        inputs += [Input(f"p{i}", p, "param"), Input(f"g{i}", gr)]
        inputs += [Input(f"s{i}_{j}", v, "state") for j, v in enumerate(state)]
        res = b.op(opname, p, gr, *state, t, *[h.value for h in hyper], **op_attrs)
        res = res if isinstance(res, tuple) else (res,)
        outputs += [Output(f"p{i}", res[0])] + [Output(f"s{i}_{j}", r) for j, r in enumerate(res[1:])]
    inputs.append(Input("t", t, "state"))
    g = Graph("opt", inputs + hyper, b.ops, outputs)
    inp = {i.name: np.abs(rand(*i.value.shape)) if i.name.startswith("s") else rand(*i.value.shape)
           for i in inputs if i.name != "t"}
    inp.update({f"hyper.{k}": np.asarray(v, np.float32) for k, v in values.items()})
    return g, inp


OPTIMIZERS = [
    ("adam_update", {"lr": 1e-2}, 2),
    ("adam_update", {"lr": 1e-2, "weight_decay": 0.1, "decoupled": True}, 2),
    ("adam_update", {"lr": 1e-2, "weight_decay": 0.1, "bias_correction": False}, 2),
    ("sgd_update", {"lr": 0.1}, 0),
    ("sgd_update", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, 1),
    ("sgd_update", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "dampening": 0.1}, 1),
    ("momentum_update", {"lr": 0.1, "beta": 0.9}, 1),
    ("momentum_update", {"lr": 0.1, "beta": 0.8, "unbiased": True}, 1),
    ("adam_update", {"lr": 1e-2, "clip": True, "gscale": 0.25}, 2),
]


@pytest.mark.parametrize("opname,attrs,slots", OPTIMIZERS)
@pytest.mark.parametrize("t0", [0, 6])
def test_multi_tensor_optimizer(opname: str, attrs: dict, slots: int, t0: int) -> None:
    g, inp = optimizer_graph(opname, attrs, [(7, 5), (5,), (3, 11)], slots)
    inp["t"] = np.asarray(t0, np.int32)
    _, compiled = run_triton(g, inp)
    kinds = [la.name.split("_")[0] for la in compiled.launches]
    # gradients that are graph inputs are first copied into the gradient arena
    assert kinds == ["ew", "ew", "ew", "opt"], "one optimizer launch for all tensors"
    assert_close(compare(g, inp, steps=2), 2e-6)


def test_bias_gradient_column_sums_fuse_into_matmul_epilogue() -> None:
    def build(b, v):
        d = b.relu_grad(v["h"], b.matmul(v["g"], v["w"], transpose_b=True))
        return {"d": d, "db": b.sum(d, axes=[0]), "dbk": b.sum(d, axes=[0], keepdims=True)}

    g, inp = graph_of(build, g=(150, 10), w=(30, 10), h=(150, 30))
    _, compiled = run_triton(g, inp)
    kinds = [la.name.split("_")[0] for la in compiled.launches]
    assert kinds == ["mm", "red", "red"], kinds  # each sum: per-tile partials + one reduction of 2 rows
    assert "tl.sum(tl.where(mask" in compiled.stages["triton"]
    assert_close(compare(g, inp), 1e-5)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_rowwise_softmax_family(op: str) -> None:
    g, inp = graph_of(lambda b, v: {"y": getattr(b, op)(v["x"])}, x=(37, 23))
    inp["x"] *= 4
    assert_close(compare(g, inp), 3e-6)


def test_one_hot_and_a_label_smoothed_loss_with_its_gradient() -> None:
    b = Builder()
    logits = Value(f32(19, 7), "logits")
    labels = Value(TensorType(DType.i32, (19,)), "labels")
    oh = b.one_hot(labels, num_classes=7)
    target = b.add(b.mul(oh, b.full(value=0.9, dtype="f32", shape=())), b.full(value=0.1 / 7, dtype="f32", shape=()))
    lsm = b.log_softmax(logits)
    loss = b.neg(b.mean(b.sum(b.mul(target, lsm), axes=[1]), axes=[0]))
    # gradient of the loss w.r.t. logits: (softmax * sum(target) - target) / batch
    grad = b.div(b.sub(b.mul(b.softmax(logits), b.sum(target, axes=[1], keepdims=True)), target),
                 b.full(value=19.0, dtype="f32", shape=()))
    g = Graph("ls", [Input("logits", logits), Input("labels", labels)], b.ops,
              [Output("loss", loss), Output("grad", grad)])
    inp = {"logits": rand(19, 7) * 3, "labels": RNG.integers(0, 7, 19).astype(np.int32)}
    assert_close(compare(g, inp), 3e-6)
