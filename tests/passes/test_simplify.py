"""DCE, CSE, constant folding and algebraic identities keep results and remove work."""

import numpy as np

from mlpc.interpreter import interpret
from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import f32
from passes.manager import PassManager
from passes.simplify import algebraic, cse, dce, fold, simplify


def graph_with(build) -> Graph:
    b = Builder()
    x = Input("x", Value(f32(3, 4), "x"))
    w = Input("w", Value(f32(4), "w"), "param")
    outs = build(b, x.value, w.value)
    return Graph("f", [x, w], b.ops, [Output(f"o{i}", v) for i, v in enumerate(outs)])


def names(g: Graph) -> list[str]:
    return [op.name for op in g.ops]


def same_results(g1: Graph, g2: Graph) -> None:
    rng = np.random.default_rng(0)
    env = {"x": rng.normal(size=(3, 4)).astype(np.float32), "w": rng.normal(size=4).astype(np.float32)}
    a, b = interpret(g1, env), interpret(g2, env)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)


def test_dce_removes_unused_ops():
    g = graph_with(lambda b, x, w: [b.exp(x), b.log(b.exp(x))][:1] + [b.neg(w)][:0])
    out = dce(g)
    assert names(out) == ["exp"]
    same_results(g, out)


def test_cse_merges_identical_ops():
    def build(b, x, w):
        return [b.add(b.mul(x, w), b.mul(x, w))]
    g = graph_with(build)
    out = cse(g)
    assert names(out) == ["mul", "add"]
    same_results(g, out)


def test_fold_evaluates_constant_expressions():
    def build(b, x, w):
        two = b.add(b.scalar(1.0, x), b.scalar(1.0, x))
        return [b.mul(x, b.broadcast_to(b.sqrt(b.mul(two, two)), shape=(4,)))]
    g = graph_with(build)
    out = simplify(fold(g))
    assert names(out) == ["full", "mul"]
    assert out.ops[0].attrs["value"] == 2.0 and out.ops[0].attrs["shape"] == (4,)
    same_results(g, out)


def test_algebraic_identities():
    def build(b, x, w):
        y = b.mul(b.add(x, b.scalar(0.0, x)), b.scalar(1.0, x))
        y = b.neg(b.neg(b.div(y, b.scalar(1.0, x))))
        y = b.reshape(b.reshape(y, shape=(12,)), shape=(3, 4))
        return [b.transpose(y, perm=(0, 1)), b.sub(w, b.scalar(0.0, w))]
    g = graph_with(build)
    out = simplify(algebraic(g))
    assert out.ops == [] and out.outputs[0].value is out.inputs[0].value and out.outputs[1].value is out.inputs[1].value
    same_results(g, out)


def test_broadcasting_identity_is_kept_when_it_changes_the_shape():
    g = graph_with(lambda b, x, w: [b.add(w, b.zeros_like(x))])
    out = simplify(g)
    assert out.outputs[0].value.shape == (3, 4)
    same_results(g, out)


def test_simplify_through_the_pass_manager_verifies():
    g = graph_with(lambda b, x, w: [b.add(b.mul(x, w), b.mul(x, w))])
    pm = PassManager()
    out = pm.run(g, "cse,dce,fold,algebraic,simplify")
    assert names(out) == ["mul", "add"]
    assert [name for name, _ in pm.timings] == ["cse", "dce", "fold", "algebraic", "simplify"]
