"""Every kernel configuration the Triton codegen can emit, compiled ahead of time for sm_90 with no
GPU: PTX targets sm_90a, tf32/bf16 matmuls use wgmma, shared memory fits, no register spills."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from runtime.triton_check import select_device  # noqa: E402

select_device()

from codegen import triton_config as cfg  # noqa: E402
from codegen.kernel_plan import plan_graph  # noqa: E402
from codegen.triton_render import Launch, module_source, render  # noqa: E402
from codegen.views import View  # noqa: E402
from mlpc.ir import Graph, Input, Output, Value  # noqa: E402
from mlpc.ops import Builder  # noqa: E402
from mlpc.types import DType, TensorType, f32  # noqa: E402
from runtime.triton_loader import SHARED_MEMORY_LIMIT, aot_compile_many  # noqa: E402
from tests.handbuilt import mlp_step_graph  # noqa: E402


def launches_of(graph: Graph, precision: str = "tf32", sm_count: int = 132) -> list[Launch]:
    return [render(k, precision, interpret=False) for k in plan_graph(graph, sm_count, precision).kernels]


def spec_key(la: Launch) -> tuple:
    """What makes two launches compile differently: source (name aside), meta, specialization."""
    body = la.source.split("\n", 2)[2]
    spec = tuple((a.dtype, (a.offset * a.dtype.itemsize) % 16 == 0) if isinstance(a, View) else
                 ("one" if a == 1 else "d16" if a % 16 == 0 else "int") for _, a in la.args)
    return body, tuple(sorted(la.constexprs.items())), la.num_warps, la.num_stages, spec


def check_all(launches: list[Launch], wgmma: bool = False) -> int:
    """Compile each distinct configuration for sm_90; returns how many were compiled."""
    seen: dict[tuple, Launch] = {}
    for la in launches:
        seen.setdefault(spec_key(la), la)
    distinct = [dataclasses.replace(la, name=f"{la.name}_c{i}",
                                    source=la.source.replace(f"def {la.name}(", f"def {la.name}_c{i}(", 1))
                for i, la in enumerate(seen.values())]
    results = aot_compile_many(module_source(distinct), distinct)
    problems = []
    for la, r in zip(distinct, results, strict=True):
        if "error" in r:  # report every failing configuration, not just the first
            problems.append(f"{la.name} {la.constexprs}: compile failed: {r['error'][:300]}")
            continue
        if ".target sm_90a" not in r["ptx"]:
            problems.append(f"{la.name}: PTX does not target sm_90a")
        if r["shared"] > SHARED_MEMORY_LIMIT:
            problems.append(f"{la.name} {la.constexprs}: {r['shared']} bytes of shared memory")
        if r["local"] != 0 or r["registers"] <= 0:
            problems.append(f"{la.name} {la.constexprs}: spills or no resource report ({r})")
        if wgmma and la.name.startswith("mm") and "wgmma" not in r["ptx"]:
            problems.append(f"{la.name} {la.constexprs}: no wgmma in the PTX")
    assert not problems, "\n".join(problems)
    return len(distinct)


def matmul_graph(m: int, n: int, k: int, ta: bool = False, tb: bool = False, epilogue: bool = True) -> Graph:
    b = Builder()
    a = Value(f32(*((k, m) if ta else (m, k))), "a")
    w = Value(f32(*((n, k) if tb else (k, n))), "w")
    bias = Value(f32(n), "bias")
    z = b.matmul(a, w, transpose_a=ta, transpose_b=tb)
    out = b.relu(b.add(z, bias)) if epilogue else z
    return Graph("mm", [Input("a", a), Input("w", w), Input("bias", bias)], b.ops, [Output("out", out)])


# shapes reaching every (BLOCK_M, BLOCK_N, BLOCK_K, stages) that matmul_blocks can return
N_FOR_BN = (10, 20, 50, 256)
M_FOR_BM = (40, 300)
K_FOR_BK = {"tf32": (12, 40, 100), "ieee": (12, 40, 100), "bf16": (12, 40, 100)}


@pytest.mark.parametrize("precision", ["tf32", "bf16", "ieee"])
def test_every_matmul_configuration_compiles_for_sm90(precision: str) -> None:
    launches: list[Launch] = []
    configs = set()
    for m, n, k in itertools.product(M_FOR_BM, N_FOR_BN, K_FOR_BK[precision]):
        configs.add(cfg.matmul_blocks(m, n, k, precision))
        launches += launches_of(matmul_graph(m, n, k), precision)
    for ta, tb in itertools.product((False, True), repeat=2):
        launches += launches_of(matmul_graph(300, 256, 300, ta, tb), precision)
    launches += launches_of(matmul_graph(256, 256, 8192, True, False, epilogue=False), precision)  # split-K
    launches += launches_of(matmul_graph(1 << 15, 256, 784), precision)  # many rows, long K
    assert any(la.constexprs.get("SPLIT_K", 1) > 1 for la in launches)
    bn = {c[1] for c in configs}
    assert bn == {16, 32, 64, 128} and {c[0] for c in configs} == {64, 128}
    assert check_all(launches, wgmma=precision != "ieee") >= len(configs)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_benchmark_training_steps_compile_for_sm90(precision: str) -> None:
    launches: list[Launch] = []
    for sizes in ([784, 256, 256, 10], [32, 64, 64, 64, 64, 16], [32, 128, 128, 128, 128, 16]):
        for batch in (2 ** 10, 2 ** 14, 2 ** 18):
            loss = "sce" if sizes[0] == 784 else "mse"
            launches += launches_of(mlp_step_graph(sizes, batch, loss, bias=sizes[0] == 784), precision)
    check_all(launches, wgmma=True)


def test_every_elementwise_and_reduction_configuration_compiles_for_sm90() -> None:
    launches: list[Launch] = []
    for n in (1, 5, 20, 40, 100, 200, 400, 900):  # every BLOCK of ewise_block
        b = Builder()
        x, row, col = Value(f32(3, n), "x"), Value(f32(n), "row"), Value(f32(3, 1), "col")
        s = b.full(value=0.5, dtype="f32", shape=())
        y = b.gelu(b.add(b.mul(b.sub(x, row), col), s))
        w = b.where(b.greater(x, s), b.tanh(y), b.sigmoid(b.exp(y)))
        g = Graph("ew", [Input("x", x), Input("row", row), Input("col", col)], b.ops, [Output("w", w)])
        launches += launches_of(g)
    for rows, cols in itertools.product((1, 3, 20, 100, 300, 5000), (1, 20, 40, 100, 300)):
        for op in ("sum", "max"):
            b = Builder()
            x = Value(f32(rows, cols), "x")
            r = getattr(b, op)(x, axes=[0])
            g = Graph("r", [Input("x", x)], b.ops, [Output("r", r)])
            launches += launches_of(g)
    assert {la.constexprs.get("BC") for la in launches if la.name.startswith("red")} == {16, 32, 64, 128}
    check_all(launches)


def test_every_softmax_cross_entropy_and_optimizer_configuration_compiles_for_sm90() -> None:
    launches: list[Launch] = []
    for classes in (3, 20, 40, 100, 200, 500, 1000, 2000, 4000, 8000):
        b = Builder()
        logits, labels = Value(f32(70, classes), "l"), Value(TensorType(DType.i32, (70,)), "y")
        one = b.full(value=1.0, dtype="f32", shape=())
        loss = b.softmax_cross_entropy(logits, labels)
        grad = b.softmax_cross_entropy_grad(logits, labels, one)
        g = Graph("sce", [Input("l", logits), Input("y", labels)], b.ops, [Output("loss", loss), Output("g", grad)])
        launches += launches_of(g)
    assert {la.constexprs["BC"] for la in launches if la.name.startswith("sce")} == {16 << i for i in range(10)}
    for classes in (3, 100, 8000):  # the row-wise kernels share the SCE block choices
        b = Builder()
        x, labels = Value(f32(70, classes), "x"), Value(TensorType(DType.i32, (70,)), "y")
        outs = [Output("s", b.softmax(x)), Output("l", b.log_softmax(x)),
                Output("o", b.one_hot(labels, num_classes=classes))]
        launches += launches_of(Graph("row", [Input("x", x), Input("y", labels)], b.ops, outs))
    check_all(launches)


OPTIMIZERS = [("adam", {}), ("adam", {"weight_decay": 0.1, "decoupled": True}),
              ("adam", {"weight_decay": 0.1, "bias_correction": False}),
              ("sgd", {"momentum": 0.0, "weight_decay": 0.1}), ("sgd", {"momentum": 0.9, "nesterov": True}),
              ("momentum", {"unbiased": True}), ("momentum", {})]


def test_every_optimizer_configuration_compiles_for_sm90() -> None:
    launches: list[Launch] = []
    for (opt, attrs), sizes in itertools.product(OPTIMIZERS, ([2, 3, 2], [30, 20, 10])):
        launches += [la for la in launches_of(mlp_step_graph(sizes, 8, "mse", opt, opt_attrs=attrs))
                     if la.name.startswith("opt")]
    assert {la.constexprs["BLOCK"] for la in launches} == {32, 1024}
    check_all(launches)
