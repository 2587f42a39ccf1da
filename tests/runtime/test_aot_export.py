"""Exported libraries train and predict like the Python trainer, on ragged shapes, through ctypes."""

from __future__ import annotations

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.errors import InputError, MlpcError, NumericalError
from tests.aot_util import data, dynamic_symbols, export, needed_libraries, ragged_model, run, trainer

API = {"create", "destroy", "last_error", "predict", "predict_n", "num_buffers", "buffer_info", "buffer", "load",
       "save", "steps", "abi_version", "ir_hash", "target", "manifest", "manifest_sha256"}


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    """A 33-17-5 ReLU model (batch 7, plus a 3-row training step), its LLVM trainer and library."""
    out = tmp_path_factory.mktemp("ragged")
    tr = trainer(ragged_model(), batch=7)
    ex = export(tr, out, "ragged", train_batches=[3])
    return tr, ex


def test_files_symbols_and_dependencies(ragged):
    _tr, ex = ragged
    assert ex.library.name == "libragged.so" and ex.header.name == "ragged.h"
    syms = dynamic_symbols(ex.library)
    train = {"train_step", "train_step_n", "set_hyper", "get_hyper", "set_allreduce"}
    assert syms == {f"ragged_{s}" for s in API | train} | {"mlpc_abi_version", "mlpc_library_name"}
    needed = needed_libraries(ex.library)
    assert needed <= {"libc.so.6", "libm.so.6", "libpthread.so.0", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
    header = ex.header.read_text()
    assert f'#define RAGGED_IR_HASH "{ex.spec.ir_hash}"' in header
    assert "int ragged_train_step(ragged_state *state, const float *x, const int32_t *y, float *loss);" in header
    assert "#define RAGGED_BATCH 7 " in header and "#define RAGGED_IN_FEATURES 33" in header


def test_steps_match_the_jit_trainer_and_the_reference(ragged, tmp_path):
    tr, ex = ragged
    # a fresh trainer from the exported checkpoint, on the NumPy reference backend
    ref = mlpc.load(str(ex.weights), backend="numpy")
    jit = mlpc.load(str(ex.weights), backend="llvm")
    lib = mlpc.load_library(ex.library)
    for k, v in tr.parameters().items():
        np.testing.assert_array_equal(lib.parameters()[k], v)
    rng = np.random.default_rng(1)
    for i in range(8):
        n = 7 if i % 3 else 3
        x, y = data(rng, n, 33, 5)
        got, want, exact = lib.step(x, y), ref.step(x, y), jit.step(x, y)
        assert got == exact  # the JIT's kernels, bit for bit
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    for k, v in jit.parameters().items():
        np.testing.assert_array_equal(lib.parameters()[k], v)
    for k, v in ref.optimizer_state().items():
        np.testing.assert_allclose(lib.optimizer_state()[k], v, rtol=1e-3, atol=1e-6)
    assert lib.steps_taken == 8 and int(lib.optimizer_state()["t"]) == 8
    for n in (1, 6, 7, 8, 15, 22):
        x, _ = data(rng, n, 33, 5)
        np.testing.assert_allclose(lib.predict(x), jit.predict(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lib.predict(x), ref.predict(x), rtol=1e-4, atol=1e-5)


def test_checkpoints_round_trip_between_c_and_python(ragged, tmp_path):
    _tr, ex = ragged
    lib = mlpc.load_library(ex.library)
    rng = np.random.default_rng(2)
    for _ in range(3):
        lib.step(*data(rng, 7, 33, 5))
    saved = tmp_path / "from_c.safetensors"
    lib.save(saved)
    back = mlpc.load(str(saved), backend="numpy")
    assert back.steps_taken == 3
    for k, v in lib.parameters().items():
        np.testing.assert_array_equal(back.parameters()[k], v)
    for k, v in lib.optimizer_state().items():
        np.testing.assert_array_equal(back.optimizer_state()[k].reshape(v.shape), v)
    # Python writes, C reads
    back.step(*data(rng, 7, 33, 5))
    back.save(str(tmp_path / "from_py.safetensors"))
    lib.load(tmp_path / "from_py.safetensors")
    assert lib.steps_taken == 4
    for k, v in back.parameters().items():
        np.testing.assert_array_equal(lib.parameters()[k], v)
    # load_state from arrays, as Trainer.load_state
    lib.load_state({"0.bias": np.ones(17)})
    np.testing.assert_array_equal(lib.parameters()["0.bias"], np.ones(17, np.float32))
    with pytest.raises(MlpcError, match="shape"):
        lib.load_state({"0.bias": np.ones(16)})
    with pytest.raises(MlpcError, match="unknown"):
        lib.load_state({"nope": np.ones(1)})


def test_bad_data_is_refused_clearly(ragged):
    _tr, ex = ragged
    lib = mlpc.load_library(ex.library)
    rng = np.random.default_rng(3)
    x, y = data(rng, 7, 33, 5)
    with pytest.raises(InputError, match="exported for training batches of 3, 7 rows"):
        lib.step(*data(rng, 5, 33, 5))
    with pytest.raises(InputError, match="out of range"):
        lib.step(x, np.full(7, 5))
    with pytest.raises(InputError, match=r"shape \[batch, 33\]"):
        lib.predict(np.zeros((3, 32), np.float32))
    # the library's own label check (bypassing the Python one)
    import ctypes

    bad = np.array([0, 1, 2, 3, 4, 9, 0], np.int32)
    loss = ctypes.c_float()
    rc = lib._fns["train_step_n"](lib._state, 7, x.ctypes.data, bad.ctypes.data, ctypes.byref(loss))
    assert rc == 6 and "label 9 of row 5 is outside [0, 5)" in lib._fns["last_error"]().decode()
    before = lib.parameters()
    lib.load_state({"2.weight": np.full((17, 5), 1e30, np.float32), "0.weight": np.full((33, 17), 1e30, np.float32)})
    with pytest.raises(NumericalError, match="loss became"):
        lib.step(x, y)
    lib.load_state(before)
    lib.close()
    with pytest.raises(MlpcError, match="closed"):
        lib.predict(x)


def test_inference_only_library(ragged, tmp_path):
    tr, _ex = ragged
    ex = export(tr, tmp_path, "ragged_inf", inference=True, predict_batch=4)
    syms = dynamic_symbols(ex.library)
    assert "ragged_inf_train_step" not in syms and "ragged_inf_predict_n" in syms
    assert "train_step" not in ex.header.read_text()
    lib = mlpc.load_library(ex.library)
    assert lib.inference_only and set(lib.optimizer_state()) == set()
    assert set(lib.parameters()) == set(tr.parameters())
    x, y = data(np.random.default_rng(4), 11, 33, 5)
    np.testing.assert_allclose(lib.predict(x), tr.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(MlpcError, match="inference-only"):
        lib.step(x[:7], y[:7])
    lib.load(ex.weights)  # a full checkpoint: optimizer state is skipped
    # the inference library is smaller: no backward pass, no optimizer, no moments in the weights
    assert ex.library.stat().st_size < _ex.library.stat().st_size


def test_mse_loss_and_sgd_momentum(tmp_path):
    model = nn.Sequential(nn.Linear(9, 13), nn.Tanh(), nn.Linear(13, 4))
    tr = trainer(model, nn.MSELoss(), optim.SGD(lr=0.05, momentum=0.9), batch=5)
    ex = export(tr, tmp_path, "regress", threads=1)
    assert "const float *y" in ex.header.read_text()
    lib = mlpc.load_library(ex.library)
    rng = np.random.default_rng(5)
    for _ in range(5):
        x, y = data(rng, 5, 9, None, 4)
        assert lib.step(x, y) == pytest.approx(tr.step(x, y), rel=1e-5, abs=1e-7)
    for k, v in tr.parameters().items():
        np.testing.assert_allclose(lib.parameters()[k], v, rtol=1e-5, atol=1e-6)


def test_generic_x86_64_export_has_no_avx(tmp_path):
    tr = trainer(ragged_model(), batch=7, backend="numpy")
    ex = export(tr, tmp_path, "portable", generic=True, threads=1)
    assert ex.spec.target.cpu == "x86-64" and ex.spec.target.features == ""
    dis = run(["objdump", "-d", "--no-show-raw-insn", str(ex.library)])
    assert dis.returncode == 0
    text = dis.stdout
    assert "xmm" in text and "ymm" not in text and "zmm" not in text
    lib = mlpc.load_library(ex.library)
    assert lib.target["cpu"] == "x86-64"
    assert '#define PORTABLE_TARGET_CPU "x86-64"' in ex.header.read_text()
    assert lib.manifest["target"]["lanes"] == 4
    rng = np.random.default_rng(6)
    for _ in range(4):
        x, y = data(rng, 7, 33, 5)
        assert lib.step(x, y) == pytest.approx(tr.step(x, y), rel=1e-4, abs=1e-6)


def test_bad_export_options_are_refused(tmp_path):
    tr = trainer(ragged_model(), batch=7, backend="numpy")
    with pytest.raises(MlpcError, match="C identifier"):
        export(tr, tmp_path, "bad-name")
    with pytest.raises(MlpcError, match="C identifier"):
        export(tr, tmp_path, "mlpc_x")
    for system in ("m", "c", "pthread"):  # libm.so beside the program would shadow -lm on the link line
        with pytest.raises(MlpcError, match=f"shadows the system library lib{system}"):
            export(tr, tmp_path, system)
    assert not list(tmp_path.iterdir()), "a refused export writes nothing"
    with pytest.raises(MlpcError, match="positive"):
        export(tr, tmp_path, "ok", train_batches=[0])
    with pytest.raises(MlpcError, match="C compiler"):
        export(tr, tmp_path, "ok", cc="no-such-compiler-xyz")
    with pytest.raises(MlpcError, match="the C compiler failed"):
        export(tr, tmp_path, "ok", cflags=["-fno-such-flag-at-all"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MlpcError, match="cannot write to output folder"):
        export(tr, tmp_path / "afile", "ok")
    assert not list(tmp_path.glob(".ok-build-*"))  # failed exports leave no build folders


def test_named_cpu_and_features(tmp_path):
    """--cpu/--features reach the code generator: AVX2 code uses ymm registers but never zmm, and
    create() checks for exactly the features it was compiled with."""
    tr = trainer(ragged_model(), batch=7, backend="numpy")
    ex = export(tr, tmp_path, "avx2", cpu="x86-64-v3", features="+avx,+avx2,+fma", threads=1, keep_sources=True)
    assert ex.spec.target.lanes == 8
    text = run(["objdump", "-d", "--no-show-raw-insn", str(ex.library)]).stdout
    assert "ymm" in text and "zmm" not in text
    glue = (tmp_path / "avx2_src" / "avx2.c").read_text()
    assert '__builtin_cpu_supports("avx2")' in glue and '__builtin_cpu_supports("avx512f")' not in glue
    lib = mlpc.load_library(ex.library)
    x, y = data(np.random.default_rng(8), 7, 33, 5)
    assert lib.step(x, y) == pytest.approx(tr.step(x, y), rel=1e-4, abs=1e-6)


def test_fit_from_python(ragged):
    """ExportedModel.fit trains whole epochs; a last partial batch needs a compiled step of its size."""
    _tr, ex = ragged
    lib = mlpc.load_library(ex.library)
    x, y = data(np.random.default_rng(9), 24, 33, 5)
    history = lib.fit(x, y, epochs=3)  # 24 = 3 * 7 + 3, and the library has a 3-row step
    assert len(history) == 3 and history[-1] < history[0] and lib.steps_taken == 12
    with pytest.raises(InputError, match="last batch of 5"):
        lib.fit(x[:12], y[:12])
    lib.fit(x[:12], y[:12], drop_last=True)
    assert lib.steps_taken == 13
