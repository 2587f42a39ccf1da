"""Hyperparameters and lr schedulers in checkpoints (versioned: old checkpoints load), in exported
libraries (ABI 2: NAME_set_hyper), and in `mlpc train --schedule/--warmup` with --resume."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import mlpc
from codegen.aot.abi import ABI_VERSION
from mlpc import optim
from mlpc.checkpoint import load_arrays, save_arrays
from mlpc.errors import CheckpointError, MlpcError
from mlpc.optim import lr_scheduler as L
from tests.training.torchref import batches, compile_mlp


def _run(t, sched, data):
    for x, y in data:
        t.step(x, y)
        if sched is not None:
            sched.step()


def test_checkpoint_keeps_hyperparameters_groups_clip_and_schedulers(tmp_path):
    """Save mid-run, reload, continue: bit-identical to the uninterrupted run (llvm)."""
    data = batches(16)
    path = str(tmp_path / "run.safetensors")
    t = compile_mlp(optim.AdamW(lr=1e-2), "llvm", clip_grad_norm=0.5,
                    param_groups=[{"params": ["0.bias", "2.bias"], "weight_decay": 0.0, "lr": 2e-2}])
    s = L.SequentialLR(t, [L.LinearLR(t, start_factor=0.2, total_iters=4), L.OneCycleLR(t, max_lr=0.05,
                                                                                      total_steps=12)], [4])
    _run(t, s, data[:6])
    t.weight_decay = 0.02  # a value set by hand is kept too
    t.save(path)
    _run(t, s, data[6:])
    r = mlpc.load(path)
    assert r.clip_grad_norm == 0.5 and [g["params"] for g in r.param_groups] == [g["params"] for g in t.param_groups]
    assert len(r.schedulers) == 1 and isinstance(r.schedulers[0], L.SequentialLR)
    _run(r, r.schedulers[0], data[6:])
    assert (r.lr, r.betas, r.weight_decay) == (t.lr, t.betas, t.weight_decay)
    assert [dict(lr=g["lr"], wd=g["weight_decay"]) for g in r.param_groups] == \
        [dict(lr=g["lr"], wd=g["weight_decay"]) for g in t.param_groups]
    for k, v in t.parameters().items():
        np.testing.assert_array_equal(r.parameters()[k], v, err_msg=k)


def test_save_with_explicit_schedulers(tmp_path):
    t = compile_mlp(optim.SGD(lr=0.1, momentum=0.9))
    s = L.StepLR(t, step_size=2)
    t.schedulers = []  # detached: only saved when named
    t.save(str(tmp_path / "none.st"))
    assert mlpc.load(str(tmp_path / "none.st")).schedulers == []
    t.save(str(tmp_path / "one.st"), schedulers=[s])
    (r,) = mlpc.load(str(tmp_path / "one.st")).schedulers
    assert isinstance(r, L.StepLR) and r.step_size == 2 and r.get_last_lr() == s.get_last_lr()


def test_checkpoint_from_before_runtime_hyperparameters_loads(tmp_path):
    """A checkpoint without train_state metadata or hyper/ tensors (as written before this version)
    loads with the optimizer description's values."""
    t = compile_mlp(optim.SGD(lr=0.07, momentum=0.8))
    t.lr = 0.5
    path = str(tmp_path / "new.st")
    t.save(path)
    tensors, meta = load_arrays(path)
    old = {k: v for k, v in tensors.items() if not k.startswith("hyper/")}
    meta = {k: v for k, v in meta.items() if k not in ("mlpc.train_state", "mlpc.format", "mlpc.checksum",
                                                        "mlpc.meta_checksum")}
    save_arrays(str(tmp_path / "old.st"), old, meta)
    r = mlpc.load(str(tmp_path / "old.st"))
    assert (r.lr, r.momentum) == (0.07, 0.8)
    for k, v in t.parameters().items():
        np.testing.assert_array_equal(r.parameters()[k], v)


def test_future_train_state_version_is_refused(tmp_path):
    t = compile_mlp(optim.SGD(lr=0.1))
    t.save(str(tmp_path / "a.st"))
    tensors, meta = load_arrays(str(tmp_path / "a.st"))
    ts = json.loads(meta["mlpc.train_state"])
    meta["mlpc.train_state"] = json.dumps({**ts, "version": 99})
    meta = {k: v for k, v in meta.items() if k not in ("mlpc.format", "mlpc.checksum", "mlpc.meta_checksum")}
    save_arrays(str(tmp_path / "b.st"), tensors, meta)
    with pytest.raises(CheckpointError, match="training state version 99; this mlpc reads version 1"):
        mlpc.load(str(tmp_path / "b.st"))


def test_exported_library_sets_hyperparameters_without_recompiling(tmp_path):
    """NAME_set_hyper: the library's next step uses the new lr/momentum like the Python trainer."""
    from tests.aot_util import export

    data = batches(4)
    t = compile_mlp(optim.SGD(lr=0.1, momentum=0.9), "llvm", clip_grad_norm=1.0,
                    param_groups=[{"params": ["0.bias", "2.bias"], "lr": 0.3}])
    ex = export(t, tmp_path, "hyp", threads=1)
    lib = mlpc.load_library(ex.library)
    assert lib.abi_version == ABI_VERSION == 2
    assert lib.hyperparameters() == pytest.approx({"hyper.lr": 0.1, "hyper.momentum": 0.9, "hyper.weight_decay": 0.0,
                                                   "hyper.g1.lr": 0.3, "hyper.g1.momentum": 0.9,
                                                   "hyper.g1.weight_decay": 0.0})
    lib.step(*data[0])
    t.step(*data[0])
    lib.lr = 0.05  # every group's lr
    lib.set_hyper("hyper.g1.momentum", 0.5)
    t.lr = 0.05
    t.param_groups[0]["momentum"] = 0.5
    for x, y in data[1:]:
        lib.step(x, y)
        t.step(x, y)
    assert lib.get_hyper("hyper.g1.lr") == pytest.approx(0.05)
    for k, v in t.parameters().items():
        np.testing.assert_allclose(lib.parameters()[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
    with pytest.raises(MlpcError, match="has no runtime hyperparameter 'beta1'"):
        lib.set_hyper("beta1", 0.9)
    with pytest.raises(MlpcError, match="out of range"):
        lib.set_hyper("lr", float("nan"))
    # the library's checkpoint holds the values it set; mlpc.load reads them
    lib.save(str(tmp_path / "lib.st"))
    r = mlpc.load(str(tmp_path / "lib.st"))
    assert r.lr == pytest.approx(0.05) and r.param_groups[0]["momentum"] == pytest.approx(0.5)
    assert r.param_groups[1]["momentum"] == pytest.approx(0.9)


def test_library_of_the_previous_abi_is_refused(tmp_path):
    from tests.aot_util import export

    t = compile_mlp(optim.SGD(lr=0.1), "llvm")
    ex = export(t, tmp_path, "old", threads=1, abi_version=1)
    with pytest.raises(MlpcError, match="built for mlpc library ABI version 1, but this mlpc loads ABI version 2"):
        mlpc.load_library(ex.library)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("schedule", ["cosine", "step", "onecycle"])
def test_cli_schedule_with_warmup_resumes_bit_identical(tmp_path, monkeypatch, schedule):
    """`mlpc train --schedule S --warmup 3` checkpointing every 3 steps, killed after step 5, resumed with
    --resume: the same weights, lr and scheduler as one uninterrupted run."""
    from mlpc.api import Trainer
    from mlpc.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(64, 784)).astype(np.float32),
             y_train=rng.integers(0, 10, 64).astype(np.int32), x_test=rng.normal(size=(16, 784)).astype(np.float32),
             y_test=rng.integers(0, 10, 16).astype(np.int32))
    monkeypatch.chdir(tmp_path)
    common = ["train", "--npz", "d.npz", "--batch-size", "16", "--backend", "numpy", "--optimizer",
              "sgd-momentum", "--lr", "0.05", "--schedule", schedule, "--warmup", "3", "--no-progress",
              "--epochs", "2"]
    assert main(common + ["--save", "full.st"]) == 0
    real_step = Trainer.step

    def dying_step(self, x, y):
        if self.steps_taken == 5:
            raise _Killed()
        return real_step(self, x, y)
    monkeypatch.setattr(Trainer, "step", dying_step)
    with pytest.raises(_Killed):
        main(common + ["--checkpoint", "ck.st", "--checkpoint-every", "3"])
    monkeypatch.setattr(Trainer, "step", real_step)
    assert mlpc.load("ck.st").steps_taken == 3
    assert main(common + ["--checkpoint", "ck.st", "--checkpoint-every", "3", "--resume"]) == 0
    full, resumed = mlpc.load("full.st"), mlpc.load("ck.st")
    assert full.lr == resumed.lr and full.steps_taken == resumed.steps_taken == 8
    assert full.schedulers[0].state_dict() == resumed.schedulers[0].state_dict()
    assert [type(s).__name__ for s in full.schedulers] == \
        [{"cosine": "SequentialLR", "step": "SequentialLR", "onecycle": "OneCycleLR"}[schedule]]
    for k, v in full.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[k], v, err_msg=k)


def test_cli_refuses_a_warmup_longer_than_the_run(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(32, 784)).astype(np.float32),
             y=rng.integers(0, 10, 32).astype(np.int32))
    r = subprocess.run([sys.executable, "-m", "mlpc.cli", "train", "--npz", "d.npz", "--epochs", "1",
                        "--backend", "numpy", "--schedule", "cosine", "--warmup", "500"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    assert r.returncode != 0 and "--warmup 500 is not shorter than the run" in r.stderr
