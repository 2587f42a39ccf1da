"""`mlpc train` on a regression model file (loss = nn.MSELoss()) and a .npz with float targets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import mlpc
from mlpc import nn

ROOT = Path(__file__).resolve().parents[2]
MODEL = """from mlpc import nn
model = nn.Sequential(nn.Linear(5, 32), nn.SiLU(), nn.Dropout(0.1), nn.Linear(32, 1))
loss = nn.MSELoss()
batch_size = 32
"""


def test_cli_trains_an_mse_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 5)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * rng.normal(size=1500)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=y)  # a vector y: a column for the one-output model
    (tmp_path / "model.py").write_text(MODEL)
    cmd = [sys.executable, "-m", "mlpc.cli", "train", str(tmp_path / "model.py"), "--npz", str(tmp_path / "reg.npz"),
           "--epochs", "3", "--lr", "0.01", "--no-progress", "--save", str(tmp_path / "m.safetensors")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    m = re.search(r"test loss \(MSELoss\): ([0-9.]+), R\^2 ([0-9.-]+)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) < 0.2 and float(m.group(2)) > 0.95, r.stdout
    back = mlpc.load(str(tmp_path / "m.safetensors"))
    assert isinstance(back.loss, nn.MSELoss) and isinstance(back.model[2], nn.Dropout)
