"""mlpc.inspect / Inspection: stages, IR, stats, and the self-contained HTML report."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.errors import MlpcError
from runtime import backend as backend_registry
from runtime.backend import register_backend

from . import fakes
from .conftest import small_model


@pytest.fixture(autouse=True)
def _fake_backends_do_not_leak():
    """The fake backends registered here leave the registry with their test (later CLI tests list it)."""
    before = set(backend_registry._BACKENDS)
    yield
    for name in set(backend_registry._BACKENDS) - before:
        if name.startswith("fake-"):
            del backend_registry._BACKENDS[name]

MODEL_FILE = """
from mlpc import nn, optim
model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
loss = nn.MSELoss()
optimizer = optim.SGD(lr=0.05)
batch_size = 3
"""


def test_inspect_a_trainer_matches_trainer_ir(trainer, no_fusion):
    view = mlpc.inspect(trainer)
    assert view.stages() == ["traced", "autodiff", "optimizer", "simplified"]
    for s in view.stages():
        assert view.ir(s) == trainer.ir(s)
    with pytest.raises(MlpcError, match="no stage 'fused'; stages: traced, autodiff, optimizer, simplified"):
        view.ir("fused")


def test_inspect_a_model_or_a_model_file(tmp_path):
    view = mlpc.inspect(small_model(), optimizer=optim.SGD(lr=0.1), batch_size=4)
    assert "sgd_update" in view.ir("optimizer")
    (tmp_path / "m.py").write_text(MODEL_FILE)
    view = mlpc.inspect(str(tmp_path / "m.py"))
    assert view.trainer.batch_size == 3 and "mse" in view.ir("traced") and "sgd_update" in view.ir("simplified")
    with pytest.raises(TypeError, match="needs a Trainer, an nn.Module or a model file"):
        mlpc.inspect(42)
    with pytest.raises(TypeError, match="only accepted with a model"):
        mlpc.inspect(view.trainer, batch_size=3)


def test_stats_are_the_model_s_numbers(trainer):
    st = mlpc.inspect(trainer).stats()
    assert st.parameters == sum(p.size for p in trainer.parameters().values()) == 13 * 7 + 7 + 7 * 3 + 3
    assert st.parameter_bytes == 4 * st.parameters
    assert st.state_bytes == 2 * st.parameter_bytes + 4  # Adam's m and v, and the i32 step counter
    b = 5
    matmuls = 2 * b * 13 * 7 + 2 * b * 7 * 3 + 2 * 7 * b * 3 + 2 * b * 3 * 7 + 2 * 13 * b * 7
    assert matmuls < st.flops_per_step < 2 * matmuls
    assert st.ops == len(trainer.graph("simplified").ops) and 0 < st.kernels <= st.ops
    assert st.arena_bytes > 0 and st.batch_size == 5 and st.backend == "numpy"
    assert "parameters             122 (488 B)" in st.text()


def test_graph_of_a_text_stage_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    register_backend("fake-llvm", fakes.FakeLlvmBackend)
    tr = mlpc.compile(small_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), batch_size=4, backend="fake-llvm")
    view = mlpc.inspect(tr)
    assert view.stages() == ["traced", "autodiff", "optimizer", "simplified", "fused", "planned", "llvm", "asm"]
    assert view.ir("llvm").startswith("; ModuleID")
    st = view.stats()
    assert st.arena_bytes == int(view.ir("planned").split()[2])
    assert st.arena_source == "the fake-llvm backend's memory plan"
    with pytest.raises(MlpcError, match="stage 'asm' is text, not a graph; graph stages: traced, .*fused, planned"):
        view.dot("asm")
    assert "cluster_k0_gemm" in view.dot("fused")


def test_the_numpy_backend_shows_only_its_own_stages_but_fusion_groups_kernels(trainer, monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    monkeypatch.setitem(sys.modules, "passes.memory", fakes.memory_module())
    view = mlpc.inspect(trainer)
    assert view.stages() == trainer.stages() == ["traced", "autodiff", "optimizer", "simplified"]
    with pytest.raises(MlpcError, match="no stage 'fused'"):
        view.dot("fused")
    assert view.kernel_plan().grouping == "fused kernels from passes.fusion"
    assert view.memory().source == "passes.memory"


def test_a_backend_with_its_own_planner_gets_an_honest_label(monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())

    class Quiet(fakes.FakeTritonBackend):
        name = "fake-quiet"

        def lower(self, graph, record):
            record("triton", "# no kernel_ops() here")
            return fakes.NumpyCompiled(graph)

    register_backend("fake-quiet", Quiet)
    tr = mlpc.compile(small_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), batch_size=4, backend="fake-quiet")
    grouping = mlpc.inspect(tr).kernel_plan().grouping
    assert grouping.startswith("fused kernels from passes.fusion (an approximation: the fake-quiet backend plans")


def _report(view, tmp_path):
    path = tmp_path / "report.html"
    html = view.report(str(path))
    assert path.read_text() == html
    return html


def test_report_is_self_contained_and_complete(trainer, tmp_path, no_fusion):
    before = {k: v.copy() for k, v in trainer.parameters().items()}
    view = mlpc.inspect(trainer, repeats=2)
    html = _report(view, tmp_path)
    after = trainer.parameters()
    assert all(np.array_equal(before[k], after[k]) for k in before), "the report must not train the model"
    # no network: no external scripts, styles, images or fonts
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<link" not in html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for s in view.stages():
        assert f'id="stage-{s}"' in html and f'data-stage="{s}"' in html
    rows = re.findall(r"<tr><td class=\"\" data-v=\"\d+\">", html)
    assert len(rows) == len(view.kernels())
    for k in view.kernels():
        assert f">{k.name}</td>" in html and f"<summary>{k.name} " in html
    assert html.count('class="kernel-point"') == sum(1 for k in view.kernels() if k.cost.flops > 0)
    assert html.count('class="buffer"') == len(view.memory().buffers)
    assert "changes since optimizer: " in html
    assert "NumPy interpreter, per op (median of 2 runs)" in html


def test_report_uses_backend_kernels_and_profile(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    monkeypatch.setitem(sys.modules, "passes.memory", fakes.memory_module())
    register_backend("fake-llvm", fakes.FakeLlvmBackend)
    tr = mlpc.compile(small_model(), nn.CrossEntropyLoss(), optim.Adam(), batch_size=4, backend="fake-llvm")
    view = mlpc.inspect(tr, repeats=1)
    html = _report(view, tmp_path)
    assert "measured per kernel by the fake-llvm backend&#x27;s profiler" in html
    assert "define void @k0_gemm(ptr %args) {" in html
    assert "the fake-llvm backend&#x27;s memory plan" in html
    assert 'id="stage-asm"' in html


def test_a_backend_s_own_kernels_win(tmp_path):
    register_backend("fake-triton", fakes.FakeTritonBackend)
    tr = mlpc.compile(small_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), batch_size=4, backend="fake-triton")
    view = mlpc.inspect(tr, repeats=1)
    assert view.stages() == ["traced", "autodiff", "optimizer", "simplified", "kernels", "triton", "ttir", "ptx"]
    ks = view.kernels()
    n = len(tr.graph("simplified").ops)
    assert [k.name for k in ks] == [f"t{j}_pair" for j in range((n + 1) // 2)]
    assert sorted(i for k in ks for i in k.ops) == list(range(n))
    assert view.kernel_plan().grouping == "the fake-triton backend's own kernels"
    assert all(k.source_kind == "triton" and k.source.startswith(f"@triton.jit\ndef {k.name}(") for k in ks)
    assert 'subgraph "cluster_t0_pair"' in view.dot()
    html = _report(view, tmp_path)
    assert "tt.func @t0_pair()" in html and 'id="stage-ptx"' in html


def test_extract_function_reads_per_kernel_sections():
    from mlpc.inspection.kernels import extract_function

    ttir = "// ----- a -----\nmodule {\n}\n// ----- b (sm_90) -----\n.entry b()\n"
    assert extract_function(ttir, "a") == "// ----- a -----\nmodule {\n}"
    assert extract_function(ttir, "b") == "// ----- b (sm_90) -----\n.entry b()"
