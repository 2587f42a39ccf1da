"""Checkpoint writes are atomic: a failed or interrupted write never damages the previous checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mlpc
from mlpc import nn, optim
from mlpc.checkpoint import atomic_write, load_arrays, remove_stale_temps, temp_prefix
from mlpc.errors import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _trainer() -> mlpc.Trainer:
    return mlpc.compile(nn.Sequential(nn.Linear(4, 3)), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), batch_size=2)


@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch: pytest.MonkeyPatch, fail_in: str) -> None:
    path = str(tmp_path / "c.safetensors")
    tr = _trainer()
    tr.save(path)
    before = open(path, "rb").read()
    tr.step(np.ones((2, 4), np.float32), [0, 1])

    def boom(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    if fail_in == "write":
        import mlpc.checkpoint as ck

        real_fdopen = os.fdopen

        class Full:
            def __init__(self, f: object) -> None:
                self.f = f

            def __enter__(self) -> "Full":
                return self

            def __exit__(self, *a: object) -> None:
                self.f.close()  # type: ignore[attr-defined]

            def write(self, data: bytes) -> None:
                self.f.write(data[: len(data) // 2])  # type: ignore[attr-defined]
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(ck.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    elif fail_in == "fsync":
        monkeypatch.setattr(os, "fsync", boom)
    else:
        monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CheckpointError, match="No space left"):
        tr.save(path)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert not [n for n in os.listdir(tmp_path) if n.startswith(temp_prefix(path))], "temp file left behind"
    load_arrays(path)


def test_stale_temps_are_removed_only_for_their_checkpoint(tmp_path) -> None:
    a, b = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    for name in (temp_prefix(a) + "x.part", temp_prefix(b) + "y.part", "unrelated.part"):
        (tmp_path / name).write_bytes(b"junk")
    assert remove_stale_temps(a) == [temp_prefix(a) + "x.part"]
    assert sorted(os.listdir(tmp_path)) == sorted([temp_prefix(b) + "y.part", "unrelated.part"])


def test_atomic_write_replaces_whole_files(tmp_path) -> None:
    path = str(tmp_path / "f.bin")
    for size in (10, 1 << 20, 3):
        atomic_write(path, bytes([size % 256]) * size)
        assert open(path, "rb").read() == bytes([size % 256]) * size


DIVERGING = """
from mlpc import nn, optim
model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
loss = nn.MSELoss()
optimizer = optim.SGD(lr=1e4)
"""


def test_cli_nan_guard_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((64, 6)).astype(np.float32),
             y=rng.standard_normal((64, 3)).astype(np.float32))
    (tmp_path / "m.py").write_text(DIVERGING)
    ckpt = str(tmp_path / "c.safetensors")
    r = subprocess.run([sys.executable, "-m", "mlpc.cli", "train", str(tmp_path / "m.py"), "--npz",
                        str(tmp_path / "d.npz"), "--epochs", "20", "--batch-size", "8", "--backend", "numpy",
                        "--no-progress", "--nan-guard", "--checkpoint", ckpt, "--checkpoint-every", "1"],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "NaN or Inf" in r.stderr and "the step was not applied" in r.stderr
    bad_step = int(r.stderr.split("step ")[1].split(":")[0])
    tensors, meta = load_arrays(ckpt)
    assert int(meta["mlpc.steps"]) == bad_step - 1  # the last good step was checkpointed
    assert all(np.isfinite(v).all() for v in tensors.values() if v.dtype.kind == "f")
