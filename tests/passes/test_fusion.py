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


def test_inspection_default_policy_is_the_llvm_backends():
    import dataclasses

    from codegen.llvm.policy import POLICY
    from passes.fusion import CPU_POLICY

    assert dataclasses.replace(POLICY, name=CPU_POLICY.name) == CPU_POLICY


def _colsum_graph(axes):
    b = Builder()
    x, w = Value(f32(8, 6), "x"), Value(f32(6, 5), "w")
    h = b.relu(b.matmul(x, w))
    return Graph("cs", [Input("x", x), Input("w", w)], b.ops, [Output("h", h), Output("m", b.mean(h, axes=axes))])


def test_bias_gradient_column_sums_are_one_pattern_for_every_policy():
    """sum or mean over axis 0, spelled [0] or [-2], folds into the gemm under both policies."""
    from codegen.llvm.policy import POLICY
    from codegen.triton_policy import TritonPolicy

    for axes in ([0], [-2]):
        for policy in (POLICY, TritonPolicy()):
            plan = fuse(_colsum_graph(axes), policy)
            assert kinds(plan) == [("gemm", ["matmul", "relu", "mean"])], (axes, policy.name)
            assert [op.name for op in plan.kernels[0].colsums] == ["mean"]


def test_triton_policy_views_and_first_op_placement():
    """Views get no kernel; the tanh derivative joins the forward epilogue that computes tanh."""
    from codegen.triton_policy import TritonPolicy
    from passes.gpu import apply_rewrites

    policy = TritonPolicy()
    g = apply_rewrites(mlp_train_graph([9, 7, 7, 3], 5, "tanh", "ce", "adam"), policy.rewrites)
    plan = fuse(g, policy)
    assert plan.views and all(g.ops[i].name in policy.view_ops for i in plan.views)
    in_kernels = {i for k in plan.kernels for i in k.ops}
    assert not in_kernels & set(plan.views)
    first = kinds(plan)[0]
    assert first[0] == "gemm" and first[1][:3] == ["matmul", "add", "tanh"] and "square" in first[1]
    assert [k.kind for k in plan.kernels].count("optimizer") == 1
    assert all(g.ops[i].name != "matmul" for k in plan.kernels if k.kind == "optimizer" for i in k.ops)
    produced = {i.value for i in g.inputs}
    view_results = {g.ops[i].result for i in plan.views}
    for k in plan.kernels:  # kernels in plan order only read what earlier kernels produced
        assert all(v in produced for v in k.inputs), k.name
        produced |= set(k.outputs) | view_results


def test_planner_and_gpu_rewrite_leave_their_input_alone():
    from mlpc.printer import print_graph
    from passes.gpu import reuse_relu
    from passes.manager import get_pass

    assert get_pass("gpu-reuse-relu") is reuse_relu

    g = mlp_train_graph([9, 7, 3], 4, "relu", "ce", "sgd")
    before = print_graph(g)
    producers = [(v, v.producer) for op in g.ops for v in op.results]
    out = reuse_relu(g)
    fuse(g)
    assert print_graph(g) == before and all(v.producer is p for v, p in producers)
    assert [op.name for op in out.ops] == [op.name for op in g.ops]
    relu = next(op.result for op in out.ops if op.name == "relu")
    assert any(op.name == "relu_grad" and op.operands[0] is relu for op in out.ops)
    assert all(r.producer is op for op in out.ops for r in op.results)
