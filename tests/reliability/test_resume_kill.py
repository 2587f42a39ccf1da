"""`mlpc train --checkpoint-every N --resume` survives SIGKILL at any moment, including mid-write,
and finishes with parameters bit-identical to an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mlpc.checkpoint import load_arrays
from mlpc.errors import CheckpointError

from .fuzzing import count

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = """
from mlpc import nn, optim
model = nn.Sequential(nn.Linear(32, 512), nn.ReLU(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 5))
optimizer = optim.Adam(lr=0.003)
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = str(tmp_path_factory.mktemp("resume"))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((181, 32)).astype(np.float32)  # 163 for training: 20 full batches of 8 and one of 3
    np.savez(os.path.join(d, "data.npz"), x=x, y=rng.integers(0, 5, 181))
    with open(os.path.join(d, "model.py"), "w") as f:
        f.write(MODEL)
    return d


def command(d: str, ckpt: str, epochs: int = 3, every: int = 1) -> list[str]:
    return [sys.executable, "-m", "mlpc.cli", "train", os.path.join(d, "model.py"),
            "--npz", os.path.join(d, "data.npz"),
            "--epochs", str(epochs), "--batch-size", "8", "--seed", "11", "--backend", "numpy", "--no-progress",
            "--checkpoint", ckpt, "--checkpoint-every", str(every), "--resume"]


def temps(ckpt: str) -> list[str]:
    folder, base = os.path.split(ckpt)
    return [n for n in os.listdir(folder) if n.startswith(f".{base}.tmp-")]


def final_state(path: str) -> dict[str, np.ndarray]:
    tensors, meta = load_arrays(path)
    return {**tensors, "steps": np.asarray(int(meta["mlpc.steps"]))}


def assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs between the killed+resumed and the uninterrupted run"


def test_sigkill_during_checkpointing_resumes_bit_identically(run_dir: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ref = os.path.join(run_dir, "ref.safetensors")
    subprocess.run(command(run_dir, ref), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    want = final_state(ref)
    assert int(want["steps"]) == 3 * 21  # 163 training rows (10% of 181 held out) = 21 batches of 8

    ckpt = os.path.join(run_dir, "killed.safetensors")
    rnd = random.Random(1234)
    kills, mid_write, steps_seen = 0, 0, [0]
    while kills < 12:
        proc = subprocess.Popen(command(run_dir, ckpt), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # wait until this process has started training (its first checkpoint after resuming lands), then kill it
        # at a random moment; with a checkpoint every step, most of the time is spent writing checkpoints
        started = time.monotonic()
        mtime0 = os.stat(ckpt).st_mtime_ns if os.path.exists(ckpt) else 0
        while time.monotonic() - started < 60 and proc.poll() is None:
            if os.path.exists(ckpt) and os.stat(ckpt).st_mtime_ns != mtime0:
                break
            time.sleep(0.005)
        if kills % 2:  # targeted: kill the moment a temp file shows up, i.e. inside atomic_write
            while proc.poll() is None and not temps(ckpt) and time.monotonic() - started < 60:
                pass
        else:  # anywhere: in a step, while serializing, writing, renaming
            time.sleep(rnd.uniform(0.0, 0.03))  # a few steps at most, so 12 kills land before the run ends
        if proc.poll() is not None:
            break  # finished before we could kill it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        count("SIGKILL during checkpointed training")
        if temps(ckpt):
            mid_write += 1
        # the latest checkpoint is always complete, verified by its checksum, and never moves backwards
        try:
            tensors, meta = load_arrays(ckpt)
        except CheckpointError as e:
            pytest.fail(f"after kill {kills} the checkpoint does not load: {e}")
        steps_seen.append(int(meta["mlpc.steps"]))
        assert steps_seen[-1] >= steps_seen[-2]
    done = subprocess.run(command(run_dir, ckpt), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    assert not temps(ckpt), "stale temp files were not cleaned up"
    assert_bit_identical(final_state(ckpt), want)
    assert kills >= 8, f"only {kills} kills landed before the run finished"
    assert mid_write >= 2, f"only {mid_write} of {kills} kills hit a checkpoint write (steps seen {steps_seen})"
    print(f"{kills} kills, {mid_write} mid-write, checkpoint steps {steps_seen}")


def test_resume_refuses_other_runs_and_damaged_checkpoints(run_dir: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ckpt = os.path.join(run_dir, "other.safetensors")
    subprocess.run(command(run_dir, ckpt, epochs=1, every=5), cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=300)
    other_seed = command(run_dir, ckpt)
    other_seed[other_seed.index("--seed") + 1] = "12"
    r = subprocess.run(other_seed, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "different run" in r.stderr and "mlpc.seed" in r.stderr
    with open(ckpt, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"\xff")
    r = subprocess.run(command(run_dir, ckpt), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "checksum" in r.stderr


def test_finished_run_resumes_to_nothing(run_dir: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ckpt = os.path.join(run_dir, "done.safetensors")
    for _ in range(2):
        r = subprocess.run(command(run_dir, ckpt, epochs=1, every=0), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "step 21 (epoch 2, batch 0)" in r.stdout
    assert int(load_arrays(ckpt)[1]["mlpc.steps"]) == 21
