"""Data-parallel training under `mpiexec` (MPICH from the `mpi` extra): equality with one process, agreement
between ranks, uneven shards, checkpoint/resume across a kill, and failures that end the whole job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Measured: 20-24 steps differ from one process by at most ~2e-7 (loss) and ~1e-7 (parameters, relative
# norm): the only difference is float summation order across ranks. The bound is 1e-5.
TOLERANCE = 1e-5


def mpiexec() -> str:
    found = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    assert Path(found).exists(), "mpiexec not found: the test extra installs mpi4py and mpich"
    return found


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), MLPC_NUM_THREADS="1")
    return e


def launch(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env(), timeout=timeout)


def worker(ranks: int, *args: str) -> list[dict]:
    r = launch(ranks, "-m", "tests.distributed.worker", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 1, r.stdout
    rows = json.loads(lines[0])
    assert sorted(row["rank"] for row in rows) == list(range(ranks)), r.stdout
    return rows


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("opt", ["sgd-momentum", "adam"])
def test_two_ranks_equal_one_process(backend: str, opt: str) -> None:
    rows = worker(2, "equal", backend, opt, "8", "80", "2")  # 20 steps of a global batch of 8
    for row in rows:
        assert row["steps"] == 20
        assert row["loss_rel"] <= TOLERANCE and row["param_rel"] <= TOLERANCE, row
        assert row["same_loss"] and row["accuracy"] == row["accuracy_ref"]
        assert row["in_arena"] == (backend == "llvm")  # llvm: MPI reduces the gradients in the arena itself


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("ranks", [2, 3])
def test_dropout_masks_follow_the_global_row(backend: str, ranks: int) -> None:
    # dropout 0.3 after two layers: each rank draws its rows' masks of the global batch, so training equals
    # one process (a rank drawing from row 0 would differ at the first step, by far more than the bound);
    # 3 ranks at global batch 7 shard 3/2/2 (offsets 0, 3, 5) and leave one rank empty in the last batch
    rows = worker(ranks, "equal", backend, "adam", "7", "37", "2", "0.3")
    for row in rows:
        assert row["steps"] == 12
        assert row["loss_rel"] <= TOLERANCE and row["param_rel"] <= TOLERANCE, row


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_three_ranks_uneven_shards_and_empty_rank(backend: str) -> None:
    # 37 rows at global batch 7: 5 batches split 3/2/2, then 2 rows on 3 ranks (one rank gets none)
    rows = worker(3, "equal", backend, "adam", "7", "37", "4")
    for row in rows:
        assert row["steps"] == 24 and row["empty_steps"] == 4
        assert row["loss_rel"] <= TOLERANCE and row["param_rel"] <= TOLERANCE, row


@pytest.mark.parametrize("kind", ["model", "batch"])
def test_mismatched_ranks_refused_at_start(kind: str) -> None:
    for row in worker(2, "mismatch", kind):
        assert row["error"] and "rank(s) [1]" in row["error"] and "different" in row["error"]


def test_failing_rank_ends_the_job() -> None:
    start = time.monotonic()
    r = launch(2, "-m", "tests.distributed.worker", "fail", "5", timeout=120)
    assert r.returncode != 0
    assert "injected failure" in r.stderr
    assert time.monotonic() - start < 60


def _npz(tmp: Path) -> Path:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 784)).astype(np.float32)
    y = rng.integers(0, 10, 300).astype(np.int32)
    path = tmp / "d.npz"
    np.savez(path, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    return path


def _train(ranks: int, npz: Path, ckpt: Path, *extra: str) -> list[str]:
    return [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mlpc.cli", "train", "--npz", str(npz), "--epochs", "4",
            "--batch-size", "20", "--backend", "numpy", "--no-progress", "--checkpoint", str(ckpt),
            "--checkpoint-every", "2", *extra]


def _rank_pids(marker: str) -> list[int]:
    """The Python processes (the ranks, not mpiexec or its proxies) whose command line names `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and args[0] == sys.executable.encode() and marker.encode() in args:
            pids.append(int(entry.name))
    return sorted(pids)


def test_checkpoint_resume_after_a_killed_rank(tmp_path: Path) -> None:
    from mlpc.checkpoint import load_arrays

    npz = _npz(tmp_path)
    whole = tmp_path / "whole.safetensors"
    r = subprocess.run(_train(2, npz, whole), capture_output=True, text=True, cwd=ROOT, env=env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("test accuracy:") == 1  # rank 0 only
    killed = tmp_path / "killed.safetensors"
    proc = subprocess.Popen(_train(2, npz, killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env(), start_new_session=True)
    deadline = time.monotonic() + 120
    while not killed.exists() and time.monotonic() < deadline:  # wait for a first checkpoint
        time.sleep(0.05)
    assert killed.exists(), "no checkpoint was written"
    pids = _rank_pids(str(killed))
    assert len(pids) == 2, f"expected 2 rank processes, found {pids}"
    t0 = time.monotonic()
    os.kill(pids[-1], signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode != 0 and time.monotonic() - t0 < 60
    r = subprocess.run(_train(2, npz, killed, "--resume"), capture_output=True, text=True, cwd=ROOT, env=env(),
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, meta_a = load_arrays(str(whole))
    b, meta_b = load_arrays(str(killed))
    assert meta_a["mlpc.steps"] == meta_b["mlpc.steps"] == "48"
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
