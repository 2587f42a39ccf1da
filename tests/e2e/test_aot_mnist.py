"""End to end: a 784-256-10 MLP exported as a C library trains on MNIST from C like the Python trainer."""

from __future__ import annotations

import gzip
import re
import sys

import numpy as np
import pytest

import mlpc
from mlpc import datasets, nn, optim
from mlpc.modelfile import load_model_file
from tests.aot_util import ROOT, compile_c, export, run

STEPS = 300
REF_STEPS = 30  # the NumPy reference is slow; two float32 implementations also drift apart over long runs
BATCH = 128


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """The shipped MNIST, uncompressed (the C program reads raw IDX with libc only)."""
    out = tmp_path_factory.mktemp("mnist")
    for gz in (ROOT / "mlpc" / "data" / "mnist").glob("*.gz"):
        (out / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """examples/models/mnist_mlp.py exported as libmnist_mlp.so before any training."""
    mf = load_model_file(str(ROOT / "examples" / "models" / "mnist_mlp.py"))
    tr = mlpc.compile(mf.model, nn.CrossEntropyLoss(), mf.optimizer, batch_size=mf.batch_size, backend="llvm")
    out = tmp_path_factory.mktemp("mnist_lib")
    return tr, export(tr, out, "mnist_mlp")


@pytest.fixture(scope="module")
def python_run(exported):
    """The Python trainer (and a NumPy-reference trainer from the same weights) on the C program's batches."""
    tr, ex = exported
    ref = mlpc.load(str(ex.weights), backend="numpy")
    data = datasets.mnist()
    per_epoch = len(data.x_train) // BATCH
    losses, ref_losses = [], []
    for s in range(STEPS):
        row = (s % per_epoch) * BATCH
        xb, yb = data.x_train[row:row + BATCH], data.y_train[row:row + BATCH]
        losses.append(tr.step(xb, yb))
        if s < REF_STEPS:
            ref_losses.append(ref.step(xb, yb))
    return tr, np.array(losses), np.array(ref_losses), data


@pytest.fixture(scope="module")
def c_run(exported, mnist_dir, tmp_path_factory):
    _tr, ex = exported
    work = tmp_path_factory.mktemp("c_run")
    exe = compile_c([ROOT / "examples" / "c" / "train_mnist.c"], work / "train_mnist", [ex.header.parent],
                    [(ex.library.parent, "mnist_mlp")])
    r = run([str(exe), str(mnist_dir), str(STEPS), "--save", str(work / "after.safetensors")], cwd=work)
    assert r.returncode == 0, r.stderr
    losses = [float(m.group(2)) for m in re.finditer(r"^step (\d+) loss (\S+)$", r.stdout, re.M)]
    acc = float(re.search(r"^test accuracy (\S+)$", r.stdout, re.M).group(1))
    return np.array(losses), acc, work / "after.safetensors"


def test_c_training_matches_the_python_trainer(python_run, c_run):
    tr, losses, ref_losses, data = python_run
    c_losses, c_acc, _ = c_run
    assert len(c_losses) == STEPS
    # the same kernels: equal to float32 rounding
    np.testing.assert_allclose(c_losses, losses, rtol=1e-5, atol=1e-6)
    # the NumPy reference interpreter: equal within float32 tolerance
    np.testing.assert_allclose(c_losses[:REF_STEPS], ref_losses, rtol=1e-5, atol=1e-6)
    assert c_losses[-20:].mean() < 0.5 < c_losses[:5].mean()
    assert c_acc == pytest.approx(tr.evaluate(data.x_test, data.y_test), abs=2e-4)
    assert c_acc > 0.9


def test_checkpoint_saved_from_c_loads_in_python(python_run, c_run):
    tr, *_ = python_run
    *_, saved = c_run
    back = mlpc.load(str(saved), backend="numpy")
    assert back.steps_taken == STEPS
    for k, v in tr.parameters().items():
        np.testing.assert_allclose(back.parameters()[k], v, rtol=1e-4, atol=1e-6)
    for k, v in tr.optimizer_state().items():
        np.testing.assert_allclose(back.optimizer_state()[k].reshape(v.shape), v, rtol=1e-3, atol=1e-7)


def test_inference_only_library_predicts_like_the_trainer(python_run, tmp_path):
    tr, _l, _r, data = python_run
    ex = export(tr, tmp_path, "mnist_infer", inference=True)
    lib = mlpc.load_library(ex.library)
    x = data.x_test[:1000]
    np.testing.assert_allclose(lib.predict(x), tr.predict(x), rtol=1e-5, atol=1e-5)
    assert lib.evaluate(data.x_test, data.y_test) == pytest.approx(tr.evaluate(data.x_test, data.y_test), abs=2e-4)


def test_the_documented_c_example(exported, tmp_path):
    """docs/aot.md's example (examples/c/quickstart.c) builds warning-free as C11 and C++ and trains."""
    _tr, ex = exported
    src = ROOT / "examples" / "c" / "quickstart.c"
    assert src.read_text() in (ROOT / "docs" / "aot.md").read_text()
    exe = compile_c([src], tmp_path / "quickstart", [ex.header.parent], [(ex.library.parent, "mnist_mlp")],
                    ["-std=c11", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror"])
    r = run([str(exe)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    loss, correct = re.match(r"loss (\S+), accuracy (\d+)/128", r.stdout).groups()
    assert float(loss) < 0.1 and int(correct) >= 120
    assert mlpc.load(str(tmp_path / "trained.safetensors"), backend="numpy").steps_taken == 50
    cpp = tmp_path / "quickstart.cpp"
    cpp.write_text(src.read_text())
    compile_c([cpp], tmp_path / "quickstart_cpp", [ex.header.parent], [(ex.library.parent, "mnist_mlp")],
              ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror"], compiler="c++")


def test_mlpc_aot_command(tmp_path):
    r = run([sys.executable, "-m", "mlpc.cli", "aot", str(ROOT / "examples" / "models" / "mnist_mlp.py"), "-o",
             str(tmp_path), "--inference", "--generic", "--threads", "1"], cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "exported mnist_mlp" in r.stdout and "cpu=x86-64" in r.stdout and "inference only" in r.stdout
    for f in ("libmnist_mlp.so", "mnist_mlp.h", "mnist_mlp.safetensors"):
        assert (tmp_path / f).exists()
    lib = mlpc.load_library(tmp_path / "libmnist_mlp.so")
    trained = mlpc.compile(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)),
                           nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=128, backend="numpy")
    for k, v in trained.parameters().items():  # same seed, same initial weights
        np.testing.assert_array_equal(lib.parameters()[k], v)
    bad = run([sys.executable, "-m", "mlpc.cli", "aot", "-o", str(tmp_path), "--name", "9lives"], cwd=ROOT)
    assert bad.returncode == 2 and "argument --name" in bad.stderr and "C identifier" in bad.stderr


def test_mlpc_aot_from_a_checkpoint(tmp_path):
    """`mlpc aot MODEL.py --weights CKPT`: the library starts from the checkpoint's weights and step count."""
    (tmp_path / "tiny.py").write_text("from mlpc import nn, optim\n"
                                      "model = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))\n"
                                      "optimizer = optim.SGD(lr=0.1, momentum=0.9)\nbatch_size = 32\n")
    tr = mlpc.compile(nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)), nn.CrossEntropyLoss(),
                      optim.SGD(lr=0.1, momentum=0.9), batch_size=32, backend="numpy", seed=5)
    rng = np.random.default_rng(0)
    for _ in range(3):
        tr.step(rng.standard_normal((32, 784)).astype(np.float32), rng.integers(0, 10, 32))
    tr.save(str(tmp_path / "ckpt.safetensors"))
    r = run([sys.executable, "-m", "mlpc.cli", "aot", str(tmp_path / "tiny.py"), "-o", str(tmp_path / "out"),
             "--weights", str(tmp_path / "ckpt.safetensors"), "--train-batch", "16"], cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lib = mlpc.load_library(tmp_path / "out" / "libtiny.so")
    assert lib.steps_taken == 3 and lib.train_batches == [16, 32]
    for k, v in {**tr.parameters(), **tr.optimizer_state()}.items():
        np.testing.assert_array_equal({**lib.parameters(), **lib.optimizer_state()}[k].reshape(v.shape), v)
    x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    assert lib.step(x, y) == pytest.approx(tr.step(x, y), rel=1e-4)
