"""bf16 precision on the CPU: the llvm gemm (VDPBF16PS and the widened-FMA fallback) against the NumPy bf16
reference, whole steps, refusals, checkpoints and the CLI flag."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import mlpc
from codegen.llvm.target import generic_target, host_target, without_features
from mlpc import nn, optim
from mlpc.errors import CheckpointError, MlpcError
from mlpc.interpreter import Interpreter
from runtime.llvm_backend import lower_graph
from runtime.numpy_backend import Bf16Interpreter
from tests.codegen.test_gemm import RAGGED, data_for, matmul_graph

U32 = 2.0 ** -24


def bf16_targets() -> dict[str, object]:
    """Targets whose bf16 gemm runs here: the widened-FMA fallback at 16 (AVX512-BF16 forced off), 8, 4
    and 1 lanes, and VDPBF16PS when this CPU has it (the fallback is what hosts without it run)."""
    host = host_target(1)
    out: dict[str, object] = {}
    if host.lanes == 16:
        out["fallback16"] = dataclasses.replace(host, features=without_features(host.features, ["avx512bf16"]),
                                                precision="bf16")
        if host.bf16_native:
            out["vdpbf16ps"] = dataclasses.replace(host, precision="bf16")
    for lanes in (8, 4, 1):
        out[f"generic{lanes}"] = dataclasses.replace(generic_target(lanes), precision="bf16")
    if host.lanes == 8:
        out["host8"] = dataclasses.replace(host, precision="bf16")
    return out


TARGETS = bf16_targets()


def error_bound(g, data, k: int) -> np.ndarray:
    """Elementwise bound on |fp32-accumulated bf16 gemm - exactly summed one| (products are exact in f32):
    K roundings of partial sums, each at most u32 times the sum of magnitudes, plus the bias add's one."""
    from mlpc.precision import bf16_matmul

    op = g.ops[0]
    mag = bf16_matmul(np.abs(data["a"]), np.abs(data["w"]), op.attrs["transpose_a"], op.attrs["transpose_b"])
    return 1.01 * (k + 1) * U32 * (mag.astype(np.float64) + np.abs(data["bias"]))


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("mkn", RAGGED + [(40, 1024, 70), (96, 130, 33)])
def test_bf16_gemm_matches_bf16_reference(mkn, ta, tb, target):
    m, k, n = mkn
    g = matmul_graph(m, k, n, ta, tb, ("bias",))
    data = data_for(g, 3)
    got = lower_graph(g, target=TARGETS[target], use_cache=False).run({}, data)["out"]
    want = Bf16Interpreter(g).run(data)["out"]
    fp32 = Interpreter(g).run(data)["out"]
    bound = error_bound(g, data, k)
    assert (np.abs(got - want) <= bound).all(), float(np.max(np.abs(got - want) - bound))
    if k > 1:  # the kernel really rounds its operands: fp32 results lie outside the bf16 bound
        assert (np.abs(fp32 - want) > bound).any()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_bf16_epilogue_and_column_sums(target):
    g = matmul_graph(127, 65, 129, False, True, ("relu_grad",), colsum=True)
    data = data_for(g, 4)
    got = lower_graph(g, target=TARGETS[target], use_cache=False).run({}, data)
    want = Bf16Interpreter(g).run(data)
    # relu_grad passes or zeroes gemm values (bound as above); the column sum adds 127 of them in fp32
    mag = np.abs(want["out"]).sum(axis=0)
    assert np.allclose(got["out"], want["out"], rtol=0, atol=70 * U32 * float(np.abs(want["out"]).max()) * 10)
    assert (np.abs(got["colsum"] - want["colsum"]) <= 200 * U32 * (mag + 1)).all()


def test_native_and_fallback_compile_to_their_instructions():
    """Code generation for a host with AVX512-BF16 uses VDPBF16PS (checked on any x86 host: only compiled,
    not run); with the feature off it uses none, and a generic target neither."""
    from codegen.llvm.compile import optimize_and_emit
    from codegen.llvm.step import build_step

    g = matmul_graph(64, 96, 64, False, False, ("bias",))
    base = dataclasses.replace(generic_target(16), cpu="znver4", precision="bf16")
    native = dataclasses.replace(base, features="+avx512f,+avx512bw,+avx512vl,+avx512bf16,+fma")
    fallback = dataclasses.replace(native, features=without_features(native.features, ["avx512bf16"]))
    asm_native = optimize_and_emit(str(build_step(g, native, "test").step.module), native).asm_text
    asm_fallback = optimize_and_emit(str(build_step(g, fallback, "test").step.module), fallback).asm_text
    assert "vdpbf16ps" in asm_native
    assert "vdpbf16ps" not in asm_fallback and "vfmadd" in asm_fallback
    assert native.bf16_native and not fallback.bf16_native


def mlp(sizes):
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def run_trainer(backend, precision, sizes, batch, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    t = mlpc.compile(mlp(sizes), nn.CrossEntropyLoss(), optim.SGD(lr=0.1, momentum=0.9), batch_size=batch,
                     backend=backend, precision=precision, seed=seed)
    losses = []
    for _ in range(steps):
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], batch).astype(np.int32)
        losses.append(t.step(x, y))
    return t, np.array(losses), t.parameters()


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# Measured (these cases): llvm bf16 vs numpy bf16 parameters after 3 SGD steps differ by at most 1.9e-6
# norm-wise (fp32 vs float64 summation only; 200-96-96-10), bf16 vs fp32 by 2.1e-4 to 8.8e-4 (largest tensor
# per case). Bounds: 2e-5 (10x margin) and > 1e-4 (2x margin).
@pytest.mark.parametrize("sizes,batch", [((7, 13, 3), 5), ((33, 65, 17), 3), ((200, 96, 96, 10), 64)])
def test_llvm_bf16_steps_match_numpy_bf16_reference(sizes, batch):
    _, l_llvm, p_llvm = run_trainer("llvm", "bf16", sizes, batch)
    _, l_ref, p_ref = run_trainer("numpy", "bf16", sizes, batch)
    _, _, p_fp32 = run_trainer("numpy", "fp32", sizes, batch)
    assert np.allclose(l_llvm, l_ref, rtol=1e-5)
    for name in p_ref:
        assert rel(p_llvm[name], p_ref[name]) < 2e-5, name
    assert max(rel(p_fp32[n], p_ref[n]) for n in p_ref) > 1e-4  # bf16 is not fp32


def test_forced_fallback_step_matches_reference(monkeypatch):
    monkeypatch.setenv("MLPC_DISABLE_CPU_FEATURES", "avx512bf16")
    t, l_llvm, p_llvm = run_trainer("llvm", "bf16", (33, 65, 17), 24)
    assert "dpbf16ps" not in t.ir("asm") and ("bf16=fma" in t.ir("asm") or host_target().lanes < 16)
    _, l_ref, p_ref = run_trainer("numpy", "bf16", (33, 65, 17), 24)
    for name in p_ref:
        assert rel(p_llvm[name], p_ref[name]) < 2e-5, name


def test_precision_refusals():
    with pytest.raises(MlpcError, match="precision='tf32' is not available on the llvm backend"):
        mlpc.compile(mlp((4, 3)), batch_size=2, precision="tf32")
    with pytest.raises(MlpcError, match="precision='tf32' is not available on the numpy backend"):
        mlpc.compile(mlp((4, 3)), batch_size=2, backend="numpy", precision="tf32")
    with pytest.raises(MlpcError, match="unknown precision='half'"):
        mlpc.compile(mlp((4, 3)), batch_size=2, precision="half")
    t = mlpc.compile(mlp((4, 3)), batch_size=2, precision="ieee")
    assert t.precision == "fp32"


def test_triton_precision_names():
    pytest.importorskip("triton")
    from runtime.backend import get_backend

    assert get_backend("triton", "fp32").precision == "ieee"
    assert get_backend("triton", "bf16").precision == "bf16"
    assert get_backend("triton-bf16").precision == "bf16"
    with pytest.raises(MlpcError, match="backend 'triton-bf16' computes in bf16"):
        get_backend("triton-bf16", "fp32")
    with pytest.raises(MlpcError, match="unknown precision"):
        get_backend("triton", "fp8")


def test_checkpoint_keeps_precision(tmp_path):
    t, _, _ = run_trainer("llvm", "bf16", (7, 13, 3), 5, steps=2)
    path = str(tmp_path / "c.safetensors")
    t.save(path)
    back = mlpc.load(path)
    assert back.precision == "bf16"
    assert mlpc.load(path, precision="fp32").precision == "fp32"
    x = np.ones((5, 7), np.float32)
    assert np.array_equal(back.predict(x), t.predict(x))
    # a checkpoint written before precision was stored loads as fp32
    from mlpc.checkpoint import PRECISION_KEY, load_arrays, save_arrays

    tensors, meta = load_arrays(path)
    del meta[PRECISION_KEY]
    old = str(tmp_path / "old.safetensors")
    save_arrays(old, tensors, meta)
    assert mlpc.load(old).precision == "fp32"


def test_resume_refuses_other_precision(tmp_path):
    from mlpc import resume

    t, _, _ = run_trainer("llvm", "bf16", (7, 13, 3), 5, steps=1)
    path = str(tmp_path / "r.safetensors")
    x = np.ones((10, 7), np.float32)
    y = np.zeros(10, np.int32)
    t.save(path)
    other = mlpc.compile(mlp((7, 13, 3)), nn.CrossEntropyLoss(), optim.SGD(lr=0.1, momentum=0.9), batch_size=5)
    with pytest.raises(CheckpointError, match="precision bf16"):
        resume.resume(other, path, x, y)


def test_cli_precision_flag(tmp_path):
    model = tmp_path / "m.py"
    model.write_text("from mlpc import nn\nmodel = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))\n")
    out = subprocess.run([sys.executable, "-m", "mlpc.cli", "train", str(model), "--epochs", "1", "--limit", "512",
                          "--precision", "bf16", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "llvm, bf16" in out.stdout and "test accuracy" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "mlpc.cli", "train", "--precision", "tf32"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "precision='tf32' is not available on the llvm backend" in bad.stderr


def test_aot_export_of_a_bf16_trainer(tmp_path):
    """The exported library runs the JIT's bf16 kernels (bit for bit) and its checkpoint keeps bf16."""
    from tests.aot_util import data, export, ragged_model, trainer

    tr = mlpc.compile(ragged_model(), nn.CrossEntropyLoss(), optim.Adam(lr=1e-2), batch_size=7, precision="bf16")
    ex = export(tr, tmp_path, "bfl")
    assert "precision=bf16" in ex.spec.target.summary()
    jit = mlpc.load(str(ex.weights))
    assert jit.precision == "bf16"
    fp32 = trainer(ragged_model(), batch=7)
    fp32.load_state({**jit.parameters(), **jit.optimizer_state()})
    lib = mlpc.load_library(ex.library)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x, y = data(rng, 7, 33, 5)
        got, exact, other = lib.step(x, y), jit.step(x, y), fp32.step(x, y)
        assert got == exact
        assert got != other  # fp32 kernels give another loss
    for k, v in jit.parameters().items():
        np.testing.assert_array_equal(lib.parameters()[k], v)


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_bf16_gemm_split_over_two_threads(ta, tb):
    """Threads split column panels or row tiles; each packs what its tiles read (all of op(A), or its rows)."""
    from codegen.llvm.gemm import gemm_shape, split_axis

    target = dataclasses.replace(host_target(1), threads=2, precision="bf16")
    splits = set()
    for m, k, n in [(300, 70, 40), (64, 90, 300)]:
        g = matmul_graph(m, k, n, ta, tb, ("bias",))
        splits.add(split_axis(gemm_shape(g.ops[0], target.lanes, True), 2, False))
        data = data_for(g, 5)
        got = lower_graph(g, target=target, use_cache=False).run({}, data)["out"]
        want = Bf16Interpreter(g).run(data)["out"]
        assert (np.abs(got - want) <= error_bound(g, data, k)).all()
    assert splits == {"m", "n"}
