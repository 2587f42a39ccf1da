"""The command line: train, dump, opt, and their error messages."""

import subprocess
import sys

import numpy as np

MODEL = """
from mlpc import nn, optim
model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
optimizer = optim.SGD(lr=0.1, momentum=0.9)
batch_size = 64
"""

BAD_MODEL = """
from mlpc import nn
model = nn.Sequential(
    nn.Linear(784, 32),
    nn.Linear(16, 10),
)
"""


def mlpc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mlpc.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_train_default_model_reports_accuracy():
    r = mlpc("train", "--epochs", "1", "--limit", "3000", "--no-progress", "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    assert "epoch 1/1: loss" in r.stdout and "samples/s" in r.stdout
    acc = float(r.stdout.strip().splitlines()[-1].split(":")[1].split("%")[0])
    assert acc > 80.0


def test_train_model_file_and_checkpoint(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    r = mlpc("train", "model.py", "--epochs", "1", "--limit", "2000", "--no-progress", "--backend", "numpy",
             "--save", "out.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sgd{momentum=0.9" in r.stdout and "lr 0.1" in r.stdout and "batch 64" in r.stdout
    import mlpc as api

    trainer = api.load(str(tmp_path / "out.safetensors"))
    assert trainer.batch_size == 64 and trainer.steps_taken == 32


def test_train_on_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 784)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    r = mlpc("train", "--npz", str(tmp_path / "d.npz"), "--epochs", "2", "--no-progress", "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout


def test_train_bad_model_names_the_line(tmp_path):
    (tmp_path / "bad.py").write_text(BAD_MODEL)
    r = mlpc("train", "bad.py", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 1
    assert "Linear(16, 10) built at bad.py:5" in r.stderr


def test_dump_stages(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    r = mlpc("dump", "model.py", "--list-stages", "--backend", "numpy", cwd=tmp_path)
    assert r.stdout.split() == ["traced", "autodiff", "optimizer", "simplified", "predict"]
    r = mlpc("dump", "model.py", "--stage", "optimizer", "--backend", "numpy", cwd=tmp_path)
    assert "sgd_update" in r.stdout and 'loc("model.py:3")' in r.stdout
    r = mlpc("dump", "model.py", "--print-after-all", "--backend", "numpy", cwd=tmp_path)
    headers = [line for line in r.stdout.splitlines() if line.startswith("// ----- IR after")]
    assert headers == ["// ----- IR after autodiff -----",
                       "// ----- IR after sgd{momentum=0.9, dampening=0.0, nesterov=false} -----",
                       "// ----- IR after simplify -----"]
    r = mlpc("dump", "model.py", "--stage", "nope", "--backend", "numpy", cwd=tmp_path)
    assert r.returncode == 2 and "no stage 'nope'" in r.stderr


def test_opt_runs_a_pipeline_over_text(tmp_path):
    r = mlpc("dump", "--stage", "traced", "--no-loc", "--backend", "numpy")
    (tmp_path / "step.mlpc").write_text(r.stdout)
    r = mlpc("opt", str(tmp_path / "step.mlpc"), "-p", "autodiff,adam{eps=1e-06},simplify")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("adam_update") == 4
    import mlpc as api

    api.parse(r.stdout)
    r = mlpc("opt", str(tmp_path / "step.mlpc"), "-p", "autodiff,nosuchpass")
    assert r.returncode == 2 and "argument -p/--pipeline: unknown pass 'nosuchpass'" in r.stderr
    (tmp_path / "bad.mlpc").write_text("func @f() -> () {\n  %0: f32[] = bogus\n  return\n}\n")
    r = mlpc("opt", str(tmp_path / "bad.mlpc"))
    assert r.returncode == 1 and "line 2, column 15: unknown op 'bogus'" in r.stderr
    r = mlpc("opt", "--list-passes")  # no file needed
    assert r.returncode == 0 and "autodiff" in r.stdout and "simplify" in r.stdout
