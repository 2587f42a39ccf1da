"""Inputs that used to slip past validation: masked arrays, ragged lists, evaluate's labels, load_state
values, non-regular files, a wrong model for a checkpoint, symlinked checkpoints, thread counts."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import mlpc
from codegen.llvm.target import host_threads
from mlpc import datasets, nn, optim
from mlpc.checkpoint import load_arrays, save_arrays
from mlpc.errors import CheckpointError, DatasetError, InputError, MlpcError
from runtime import compile_cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path / "cache"))


def model(act: type[nn.Module] = nn.ReLU) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), act(), nn.Linear(8, 3))


def trainer(backend: str = "numpy", **kw) -> mlpc.Trainer:
    return mlpc.compile(model(), batch_size=8, backend=backend, **kw)


def data(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)


# --- masked arrays and ragged lists ----------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_masked_arrays_are_refused_everywhere_data_enters(backend):
    tr = trainer(backend)
    x, y = data()
    before = tr.parameters()
    mx = np.ma.masked_array(x, mask=np.zeros_like(x, bool))
    mx[0, 0] = np.ma.masked
    my = np.ma.masked_array(np.where(np.arange(8) == 2, -1, y), mask=np.arange(8) == 2)  # masked label -1
    calls = [lambda: tr.step(mx, y), lambda: tr.step(x, my), lambda: tr.predict(mx), lambda: tr.evaluate(mx, y),
             lambda: tr.evaluate(x, my), lambda: tr.fit(mx, y), lambda: tr.fit(x, my),
             lambda: next(tr.batches(mx, y)), lambda: tr.step([mx[0], mx[1]], y[:2])]
    for call in calls:
        with pytest.raises(InputError, match="masked"):
            call()
    assert all(np.array_equal(v, before[k]) for k, v in tr.parameters().items()) and tr.steps_taken == 0


def test_a_ragged_nested_list_gets_mlpcs_error():
    tr = trainer()
    with pytest.raises(InputError, match="ragged"):
        tr.step([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], [0, 1])
    with pytest.raises(InputError, match="ragged"):
        tr.predict([[1.0, 2.0, 3.0, 4.0], [1.0]])


# --- evaluate validates y like step does ------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_evaluate_validates_labels(backend):
    tr = trainer(backend)
    x, _ = data()
    pred = tr.predict(x).argmax(axis=1).astype(np.int32)
    assert tr.evaluate(x, pred) == 1.0
    assert tr.evaluate(x, list(pred)) == 1.0
    for bad, match in [(pred[:, None], "shape"), (None, "NumPy array"), (np.array(["a"] * 8), "integers"),
                       (pred[:5], "shape"), (np.full(8, 3), "out of range"), (np.full(8, -1), "out of range"),
                       (pred.astype(np.float32), "integers")]:
        with pytest.raises(InputError, match=match):
            tr.evaluate(x, bad)


# --- load_state --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_load_state_refuses_values_that_would_wrap_or_become_nan(backend):
    tr = trainer(backend)
    tr.step(*data())
    before = {**tr.parameters(), **tr.optimizer_state()}
    w = before["0.weight"]
    for arrays, match in [({"t": np.array(2 ** 40)}, "outside"), ({"t": np.array(-1)}, "outside"),
                          ({"t": np.array(1.5)}, "integers"), ({"0.weight": w.astype(object)}, "not numeric"),
                          ({"0.weight": np.full(w.shape, 1e39)}, "overflow"),
                          ({"0.weight": np.ma.masked_array(w)}, "masked"),
                          ({"0.weight": w, "t": np.array(2 ** 31)}, "outside")]:
        with pytest.raises(MlpcError, match=match):
            tr.load_state(arrays)
    after = {**tr.parameters(), **tr.optimizer_state()}
    assert all(np.array_equal(after[k], v) for k, v in before.items()) and tr.steps_taken == 1
    tr.load_state({"t": np.array(7, np.int64), "0.weight": w.astype(np.float64)})  # exact conversions are fine
    assert tr.steps_taken == 7


def test_a_checkpoint_with_a_huge_step_count_is_refused(tmp_path):
    tr = trainer()
    path = str(tmp_path / "c.safetensors")
    tr.save(path)
    tensors, meta = load_arrays(path)
    tensors["state/t"] = np.array(2 ** 40, np.int64)
    save_arrays(path, tensors, meta)  # a valid checkpoint (checksums recomputed) whose t wraps in int32
    with pytest.raises(CheckpointError, match="outside"):
        mlpc.load(path)


# --- mlpc.load(model=...) and saving through a symlink ------------------------------------------------
def test_load_refuses_a_model_whose_description_differs(tmp_path):
    path = str(tmp_path / "c.safetensors")
    trainer().save(path)
    with pytest.raises(CheckpointError, match="different model"):
        mlpc.load(path, model=model(nn.Tanh))
    other_init = nn.Sequential(nn.Linear(4, 8, init="zeros"), nn.ReLU(), nn.Linear(8, 3))
    loaded = mlpc.load(path, model=other_init)  # initializers do not matter: the weights come from the file
    assert np.array_equal(loaded.parameters()["0.weight"], mlpc.load(path).parameters()["0.weight"])


def test_saving_through_a_symlink_writes_the_target(tmp_path):
    target = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    os.symlink(target, link)
    tr = trainer()
    tr.save(str(link))
    assert link.is_symlink() and target.is_file()
    tr.step(*data())
    tr.save(str(link))
    assert link.is_symlink() and mlpc.load(str(target)).steps_taken == 1


# --- loaders refuse non-regular files -------------------------------------------------------------------
def special_files(tmp_path):
    zero = tmp_path / "zero"
    os.symlink("/dev/zero", zero)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return [(zero, "character device"), (fifo, "FIFO"), (tmp_path, "directory")]


def test_python_loaders_refuse_non_regular_files(tmp_path):
    for path, kind in special_files(tmp_path):
        with pytest.raises(CheckpointError, match=kind):
            mlpc.load(str(path))
        with pytest.raises(DatasetError, match=kind):
            datasets.read_idx(str(path))
        with pytest.raises(DatasetError, match=kind):
            datasets.load_npz(str(path))
        with pytest.raises(MlpcError, match=kind):
            mlpc.load_library(str(path))


def test_compile_cache_entries_that_cannot_be_read_are_misses(tmp_path):
    key = compile_cache.make_key("k")
    path = compile_cache.entry_path(key)
    assert path is not None
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    assert compile_cache.load(key) is None  # a FIFO: no hang
    os.unlink(path)
    assert compile_cache.store(key, {"a": 1}, b"obj", {"t": "x"}) and compile_cache.load(key) is not None
    deep = b"[" * 100000 + b"]" * 100000  # json.loads raises RecursionError on this
    path.write_bytes(compile_cache.MAGIC + struct.pack("<Q", len(deep)) + deep)
    assert compile_cache.load(key) is None


def test_a_deeply_nested_cache_header_is_rebuilt(tmp_path):
    tr = trainer("llvm")
    del tr
    entries = list((tmp_path / "cache").rglob("*.mlpcobj"))
    assert entries
    deep = b"{\"a\":" * 50000 + b"1" + b"}" * 50000
    for e in entries:
        e.write_bytes(compile_cache.MAGIC + struct.pack("<Q", len(deep)) + deep)
    tr = trainer("llvm")  # every later compile still works, and rewrites the entries
    assert np.isfinite(tr.step(*data()))
    assert all(compile_cache.load(e.stem) is not None for e in entries)


# --- thread counts and optimizer hyperparameters ------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5", str(10 ** 9)])
def test_bad_thread_counts_are_refused(monkeypatch, value):
    monkeypatch.setenv("MLPC_NUM_THREADS", value)
    with pytest.raises(MlpcError, match="MLPC_NUM_THREADS"):
        host_threads()


def test_thread_count_in_range_is_used(monkeypatch):
    monkeypatch.setenv("MLPC_NUM_THREADS", "3")
    assert host_threads() == 3


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_optimizer_hyperparameters_accept_numpy_scalars(backend):
    x, y = data()
    plain = [mlpc.compile(model(), optimizer=o, batch_size=8, backend=backend).step(x, y)
             for o in (optim.SGD(lr=0.1), optim.Adam(lr=np.float32(0.1).item()))]
    numpy = [mlpc.compile(model(), optimizer=o, batch_size=8, backend=backend).step(x, y)
             for o in (optim.SGD(lr=np.float64(0.1)), optim.Adam(lr=np.float32(0.1)))]
    assert plain == numpy
    assert type(optim.Momentum(beta=np.float16(0.5), nesterov=np.bool_(True)).beta) is float
    assert json.loads(json.dumps(optim.Adam(betas=(np.float32(0.5), np.float64(0.9))).spec()))["betas"] == [0.5, 0.9]
    for bad in [dict(lr="0.1"), dict(lr=np.array([0.1])), dict(lr=float("nan")), dict(lr=True),
                dict(nesterov="yes"), dict(momentum=None)]:
        with pytest.raises(ValueError, match="SGD"):
            optim.SGD(**bad)
