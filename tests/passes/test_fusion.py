"""The fusion pass: the kernels an MLP training step is grouped into, the dump, and ordering."""

from mlpc.ir import Graph, Input, Output, Value
from mlpc.ops import Builder
from mlpc.types import f32
from passes.fusion import fuse
from tests.handgraphs import mlp_train_graph


def kinds(plan):
    return [(k.kind, [plan.graph.ops[i].name for i in k.ops]) for k in plan.kernels]


def test_mlp_step_groups_into_the_expected_kernels():
    g = mlp_train_graph([784, 256, 256, 10], 128, "relu", "ce", "adam")
    plan = fuse(g)
    ks = kinds(plan)
    # forward: matmul with bias + ReLU epilogue (twice), last layer matmul + bias
    assert ks[0] == ("gemm", ["matmul", "add", "relu"])
    assert ks[1] == ("gemm", ["matmul", "add", "relu"])
    assert ks[2] == ("gemm", ["matmul", "add"])
    # softmax cross-entropy forward + backward + the last bias gradient in one pass
    assert ("softmax_ce", ["softmax_cross_entropy", "softmax_cross_entropy_grad", "sum"]) in ks
    # backward: the input-gradient matmul with the ReLU-derivative epilogue and bias-gradient column sums
    assert ks.count(("gemm", ["matmul", "relu_grad", "sum"])) == 2
    # one optimizer kernel with all six parameters' updates
    opt = [k for k in ks if k[0] == "optimizer"]
    assert opt == [("optimizer", ["adam_update"] * 6)]
    # the first layer's input gradient is dead code
    assert any(g.ops[i].name == "matmul" for i in plan.dead)


def test_kernel_order_is_topological_and_outputs_cover_uses():
    g = mlp_train_graph([33, 17, 17, 5], 9, "tanh", "mse", "sgd", {"momentum": 0.9})
    plan = fuse(g)
    produced = {i.value for i in g.inputs} | set(plan.constants)
    for k in plan.kernels:
        assert all(v in produced for v in k.inputs), k.name
        produced |= set(k.outputs)
    assert all(o.value in produced for o in g.outputs)


def test_dump_annotates_every_live_op_with_its_kernel():
    g = mlp_train_graph([7, 5, 3], 4, "relu", "ce", "adam")
    text = fuse(g).dump()
    assert "// k0_gemm main" in text and "// k0_gemm epilogue" in text and "colsum" in text
    assert "// kernels:" in text and "k" in text.split("// kernels:")[1]
    body = text.split("// kernels:")[0]
    op_lines = [ln for ln in body.splitlines() if " = " in ln]
    assert all("//" in ln for ln in op_lines)


def test_elementwise_chain_fuses_and_breaks_at_early_outside_readers():
    b = Builder()
    x, y = Value(f32(8, 3), "x"), Value(f32(3), "y")
    a = b.mul(x, y)           # k: elementwise
    c = b.exp(a)
    s = b.sum(c, axes=[1])    # reduction reads c
    d = b.add(c, b.scalar(1.0, c))
    g = Graph("e", [Input("x", x), Input("y", y)], b.ops, [Output("s", s), Output("d", d)])
    plan = fuse(g)
    ew = [k for k in plan.kernels if k.kind == "elementwise"]
    assert [g.ops[i].name for i in ew[0].ops] == ["mul", "exp"]
    assert c in ew[0].outputs
    # `add` runs after the reduction read c, so it cannot join the first group
    assert len(ew) == 2


def test_small_batch_weight_gradients_fuse_into_the_optimizer_kernel():
    """At batch <= 4 dW = x^T dY is a rank-K update: recomputed inside the (single) optimizer kernel."""
    g = mlp_train_graph([784, 256, 256, 10], 3, "relu", "ce", "adam")
    plan = fuse(g)
    opt = [k for k in plan.kernels if k.kind == "optimizer"]
    assert len(opt) == 1
    names = [g.ops[i].name for i in opt[0].ops]
    assert names.count("matmul") == 3 and names.count("adam_update") == 6
    assert "rank-k gradient" in plan.dump()
    big = fuse(mlp_train_graph([784, 256, 256, 10], 16, "relu", "ce", "adam"))
    assert all(big.graph.ops[i].name != "matmul" for k in big.kernels if k.kind == "optimizer" for i in k.ops)
