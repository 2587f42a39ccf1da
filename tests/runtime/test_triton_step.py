"""Whole training steps on the Triton backend against the NumPy interpreter and the numpy backend
(on the GPU when one is present, else under TRITON_INTERPRET=1)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.triton_check import compare, max_rel_error, run_triton, select_device  # noqa: E402

DEVICE = select_device()
TOL_SCALE = 5.0 if DEVICE == "cuda" else 1.0  # the GPU's exp/log/sqrt/div are approximate (a few ulp)

import mlpc  # noqa: E402
from codegen.views import UnsupportedError  # noqa: E402
from mlpc import nn, optim  # noqa: E402
from mlpc.errors import InputError  # noqa: E402
from mlpc.ir import Graph, Input, Output, Value  # noqa: E402
from mlpc.ops import Builder  # noqa: E402
from mlpc.types import f32  # noqa: E402
from runtime.backend import get_backend  # noqa: E402
from tests.handbuilt import mlp_predict_graph, mlp_step_graph, random_inputs  # noqa: E402


def assert_close(errors: dict[str, float], tol: float) -> None:
    assert errors
    tol *= TOL_SCALE
    bad = {k: e for k, e in errors.items() if not e <= tol}
    assert not bad, f"relative errors over {tol}: {bad}"


@pytest.mark.parametrize("sizes,batch,loss,opt,act", [
    ([33, 20, 17, 10], 37, "sce", "adam", "relu"),
    ([9, 24, 5], 13, "mse", "sgd", "tanh"),
    ([21, 16, 16, 3], 29, "sce", "momentum", "gelu"),
])
def test_hand_built_step_matches_interpreter(sizes, batch, loss, opt, act) -> None:
    g = mlp_step_graph(sizes, batch, loss, opt, act)
    inp = random_inputs(g, seed=3, classes=sizes[-1])
    assert_close(compare(g, inp, steps=3), 2e-5)


def test_large_batch_step_uses_split_k_and_split_reductions() -> None:
    g = mlp_step_graph([12, 16, 6], 1100, "sce", "adam")
    inp = random_inputs(g, seed=5, classes=6)
    _, compiled = run_triton(g, inp, sm_count=4)
    assert any(la.constexprs.get("SPLIT_K", 1) > 1 for la in compiled.launches)
    assert sum(la.name.startswith("red") for la in compiled.launches) >= 5
    assert_close(compare(g, inp, steps=2, sm_count=4), 2e-5)


def test_step_fuses_epilogues_and_one_optimizer_launch() -> None:
    g = mlp_step_graph([33, 20, 17, 10], 37)
    _, compiled = run_triton(g, random_inputs(g, classes=10))
    kinds = [la.name.split("_")[0] for la in compiled.launches]
    assert kinds.count("opt") == 1
    assert kinds.count("sce") == 1
    assert kinds.count("mm") == 8  # 3 forward, 3 weight gradients, 2 input gradients
    assert kinds[-2:] == ["opt", "ew"] and not compiled.plan.copies, "t + 1 runs last, in place"
    text = compiled.stages["kernels"]
    assert "+ add, relu" in text and "+ relu_grad" in text


def test_reduced_precision_step() -> None:
    g = mlp_step_graph([40, 32, 10], 64)
    inp = random_inputs(g, seed=2, classes=10)
    got_tf32, _ = run_triton(g, inp, "tf32")
    got_bf16, _ = run_triton(g, inp, "bf16")
    want = compare.__globals__["run_reference"](g, inp)
    assert max_rel_error(got_tf32["loss"], want["loss"]) < 5e-3
    assert max_rel_error(got_bf16["loss"], want["loss"]) < 3e-2
    for name in ("0.weight", "2.weight"):
        assert max_rel_error(got_bf16[name], want[name]) < 3e-2


def test_predict_graph() -> None:
    g = mlp_predict_graph([13, 8, 4], 11)
    inp = random_inputs(g)
    assert_close(compare(g, inp), 1e-5)


def make_trainer(backend: str, opt=None, loss=None):
    model = nn.Sequential(nn.Linear(13, 24), nn.ReLU(), nn.Linear(24, 7))
    return mlpc.compile(model, loss=loss or nn.CrossEntropyLoss(), optimizer=opt or optim.Adam(lr=1e-2),
                        batch_size=19, backend=backend)


@pytest.mark.parametrize("opt", [lambda: optim.Adam(lr=1e-2), lambda: optim.SGD(lr=0.1, momentum=0.9),
                                 lambda: optim.Adam(lr=1e-2, weight_decay=0.01, decoupled=True)])
def test_mlpc_compile_trains_like_numpy_backend(opt) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((19, 13)).astype(np.float32)
    y = rng.integers(0, 7, 19)
    ref, tri = make_trainer("numpy", opt()), make_trainer("triton-ieee", opt())
    losses = [(ref.step(x, y), tri.step(x, y)) for _ in range(3)]
    for a, b in losses:
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a))
    assert losses[-1][1] < losses[0][1]
    for k, v in ref.parameters().items():
        assert max_rel_error(tri.parameters()[k], v) < 2e-5, k
    assert max_rel_error(tri.predict(x[:7]), ref.predict(x[:7])) < 2e-5
    assert "@triton.jit" in tri.ir("triton") and "tl.dot" in tri.ir("triton")


def test_mlpc_compile_mse_loss() -> None:
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))
    kw = dict(loss=nn.MSELoss(), optimizer=optim.Adam(lr=1e-2), batch_size=9)
    ref = mlpc.compile(model, backend="numpy", **kw)
    model2 = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))
    tri = mlpc.compile(model2, backend="triton-ieee", **kw)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((9, 6)).astype(np.float32), rng.standard_normal((9, 3)).astype(np.float32)
    for _ in range(2):
        a, b = ref.step(x, y), tri.step(x, y)
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a))


def test_bad_inputs_raise_clear_errors() -> None:
    g = mlp_step_graph([5, 4, 3], 6)
    inp = random_inputs(g, classes=3)
    backend = get_backend("triton")
    compiled = backend.lower(g, lambda s, t: None)
    state = {i.name: backend.to_device(inp[i.name]) for i in g.inputs if i.role != "data"}
    with pytest.raises(InputError, match="shape"):
        compiled.run(state, {"x": np.zeros((7, 5), np.float32), "y": inp["y"]})
    with pytest.raises(InputError, match="missing"):
        compiled.run(state, {"x": inp["x"]})


def test_unsupported_op_is_a_clear_error() -> None:
    b = Builder()
    x = Value(f32(4, 5), "x")
    y = b.softmax(b.reshape(x, shape=[2, 2, 5]))  # rank 3: outside the GPU code generator
    g = Graph("s", [Input("x", x)], b.ops, [Output("y", y)])
    with pytest.raises(UnsupportedError, match="rank"):
        get_backend("triton").lower(g, lambda s, t: None)


def test_state_dict_entries_become_arena_views_and_stay_readable() -> None:
    g = mlp_step_graph([5, 4, 3], 6)
    inp = random_inputs(g, classes=3)
    backend = get_backend("triton-ieee")
    compiled = backend.lower(g, lambda s, t: None)
    state = {i.name: backend.to_device(inp[i.name]) for i in g.inputs if i.role != "data"}
    data = {"x": inp["x"], "y": inp["y"]}
    compiled.run(state, data)
    first = {k: backend.to_host(v) for k, v in state.items()}
    assert first["0.weight"].shape == (5, 4) and first["0.bias"].shape == (4,)
    assert int(first["t"]) == 1
    assert not np.allclose(first["0.weight"], inp["0.weight"])
    compiled.run(state, data)
    assert int(backend.to_host(state["t"])) == 2


def test_dump_stages_record_kernel_source_ttir_and_ptx() -> None:
    from runtime.triton_backend import TritonBackend

    g = mlp_step_graph([20, 16, 4], 8)
    stages: dict[str, str] = {}
    TritonBackend("tf32", aot_ir=True).lower(g, stages.__setitem__)  # no GPU: compiled for sm_90
    assert set(stages) == {"fused", "planned", "kernels", "triton", "ttir", "ptx"}
    assert stages["triton"].count("@triton.jit") == len(stages["kernels"].splitlines()) - 1
    assert "tt.dot" in stages["ttir"] and "tt.func" in stages["ttir"]
    assert ".target sm_9" in stages["ptx"] and "wgmma" in stages["ptx"]


def test_mlpc_dump_shows_triton_stages(capsys, monkeypatch) -> None:
    from mlpc.cli import main

    assert main(["dump", "--backend", "triton", "--batch-size", "16", "--stage", "triton"]) == 0
    out = capsys.readouterr().out
    assert "@triton.jit" in out and "tl.dot(" in out
    monkeypatch.setenv("MLPC_TRITON_AOT_IR", "1")  # without a GPU, ttir/ptx come from an sm_90 compile
    assert main(["dump", "--backend", "triton", "--batch-size", "16", "--stage", "ptx"]) == 0
    assert ".target sm_90a" in capsys.readouterr().out


def test_fused_stage_is_the_plan_the_step_launches() -> None:
    """The `fused` text and kernel_ops() come from the plan the launches were lowered from: every
    live op that is not a view is in exactly one planned kernel."""
    from runtime.triton_backend import TritonBackend

    g = mlp_step_graph([20, 16, 4], 8, "sce", "adam", "tanh")
    stages: dict[str, str] = {}
    compiled = TritonBackend("tf32").lower(g, stages.__setitem__)
    plan = compiled.plan.fusion
    assert plan is not None and "(policy triton)" in stages["fused"]
    ops = compiled.kernel_ops()
    assert ops and all(f"//   {name}: " in stages["fused"] for name in ops)
    covered = [i for idx in ops.values() for i in idx]
    assert len(covered) == len(set(covered))
    assert set(covered) | set(plan.views) | set(plan.dead) == set(range(len(g.ops)))
    assert all(g.ops[i].name in ("reshape", "broadcast_to", "transpose", "full") for i in plan.views)
    # the derivative of tanh (1 - h^2) is computed in the forward matmul's epilogue
    first = [g.ops[i].name for i in ops["k0_gemm"]]
    assert first[:3] == ["matmul", "add", "tanh"] and "square" in first


def test_inspection_reports_the_plan_triton_runs() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    tr = mlpc.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=0.1), batch_size=4, backend="triton")
    view = mlpc.inspect(tr)
    kp = view.kernel_plan()
    assert kp.grouping == "the triton backend's own kernels"
    assert [k.name for k in kp.kernels] == list(tr._compiled_for("step", 4).kernel_ops())
    assert "fused" in view.stages() and "(policy triton)" in view.ir("fused")
    assert "approximation" not in view.stats().kernel_grouping


def test_mean_column_sums_fuse_into_the_matmul_like_sums() -> None:
    """A bias gradient spelled mean(axes=[-2]) rides on the matmul epilogue as sum(axes=[0]) does."""
    b = Builder()
    x, w = Value(f32(9, 6), "x"), Value(f32(6, 5), "w")
    h = b.relu(b.matmul(x, w))
    g = Graph("cs", [Input("x", x), Input("w", w)], b.ops,
              [Output("h", h), Output("m", b.mean(h, axes=[-2])), Output("s", b.sum(h, axes=[0]))])
    rng = np.random.default_rng(0)
    inp = {"x": rng.standard_normal((9, 6)).astype(np.float32), "w": rng.standard_normal((6, 5)).astype(np.float32)}
    _, compiled = run_triton(g, inp)
    assert [k.kind for k in compiled.plan.fusion.kernels] == ["gemm"]
    assert_close(compare(g, inp), 2e-6)
