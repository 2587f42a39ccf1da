"""Kernel grouping: one op per kernel without a fusion pass; the fusion pass's groups when it exists."""

from __future__ import annotations

import sys

import mlpc
from mlpc import nn, optim
from mlpc.inspection.kernels import attach_sources, extract_function, plan_kernels
from runtime.backend import register_backend

from . import fakes
from .conftest import small_model


def test_one_kernel_per_op_without_fusion(trainer):
    g = trainer.graph("simplified")
    kp = plan_kernels(g, use_fusion=False)
    assert not kp.fused and "one kernel per op" in kp.grouping
    covered = sorted(i for k in kp.kernels for i in k.ops)
    scalar_consts = [i for i, op in enumerate(g.ops) if op.name == "full" and op.result.type.size == 1]
    assert covered == sorted(set(range(len(g.ops))) - set(scalar_consts))
    assert len({k.name for k in kp.kernels}) == len(kp.kernels)


def test_fallback_source_is_the_ir_and_the_numpy_reference(trainer):
    kp = plan_kernels(trainer.graph("simplified"), use_fusion=False)
    attach_sources(kp, {s: trainer.ir(s) for s in trainer.stages()}, trainer.stages())
    mm = next(k for k in kp.kernels if k.op_names == ["matmul"])
    assert mm.source_kind == "ir+numpy"
    assert "= matmul %x, %0.weight" in mm.source and "def " in mm.source and "NumPy reference of matmul" in mm.source


def test_fusion_pass_groups_are_used_when_present(trainer, monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    g = trainer.graph("simplified")
    kp = plan_kernels(g)
    assert kp.fused and kp.grouping == "fused kernels from passes.fusion"
    expected = fakes.fuse(g)
    assert [k.name for k in kp.kernels] == [k.name for k in expected.kernels]
    assert [k.ops for k in kp.kernels] == [k.ops for k in expected.kernels]
    # fused kernels keep every FLOP but move fewer bytes than the ops one by one
    unfused = plan_kernels(g, use_fusion=False)
    assert sum(k.cost.flops for k in kp.kernels) == sum(k.cost.flops for k in unfused.kernels)
    assert sum(k.cost.bytes for k in kp.kernels) < sum(k.cost.bytes for k in unfused.kernels)


def test_a_failing_fusion_pass_falls_back_with_the_reason(trainer, monkeypatch):
    broken = fakes.fusion_module()

    def fuse(graph):
        raise RuntimeError("no kernel kind for op frobnicate")

    broken.fuse = fuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "passes.fusion", broken)
    kp = plan_kernels(trainer.graph("simplified"))
    assert not kp.fused and "fusion pass failed: RuntimeError: no kernel kind for op frobnicate" in kp.grouping


def test_sources_come_from_the_backend_code_when_it_defines_the_kernels(monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    register_backend("fake-llvm", fakes.FakeLlvmBackend)
    tr = mlpc.compile(small_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), batch_size=4, backend="fake-llvm")
    assert tr.stages() == ["traced", "autodiff", "optimizer", "simplified", "fused", "planned", "llvm", "asm"]
    kp = plan_kernels(tr.graph("simplified"))
    attach_sources(kp, {s: tr.ir(s) for s in tr.stages()}, tr.stages())
    for k in kp.kernels:
        assert k.source_kind == "llvm"
        assert k.source.startswith(f"define void @{k.name}(") and k.source.endswith("}")


def test_extract_function_from_llvm_python_and_assembly():
    llvm = "define void @a(ptr %p) {\n  ret void\n}\ndefine internal fastcc void @b() {\nentry:\n  ret void\n}\n"
    assert extract_function(llvm, "b") == "define internal fastcc void @b() {\nentry:\n  ret void\n}"
    assert extract_function(llvm, "c") == ""
    py = "import triton\n\n@triton.jit\ndef k0(x_ptr, n):\n    pid = 1\n    return pid\n\n\ndef k1():\n    pass\n"
    assert extract_function(py, "k0") == "@triton.jit\ndef k0(x_ptr, n):\n    pid = 1\n    return pid"
    asm = "\t.text\nk1:\n\tmovq %rdi, %rax\n\tretq\n.Lfunc_end1:\n"
    assert extract_function(asm, "k1") == "k1:\n\tmovq %rdi, %rax\n\tretq"
