"""Every experiment script in examples/ runs end to end (with small settings) and writes its figure."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUNS = {
    "init_probe.py": (["--depth", "6", "--width", "16", "--batch", "100"], ["lecture.png", "uniform.png", "zeros.png"]),
    "quadratic_landscape.py": (["--steps", "5"], ["trajectories.png", "paths.json"]),
    "weight_movement.py": (["--depth", "3", "--width", "16", "--epochs", "1", "--limit", "500"], ["movement.png"]),
    "optimizer_study.py": (["--epochs", "1", "--limit", "300", "--test-limit", "500"], ["losses.png", "study.txt"]),
    "newton_mnist.py": (["--examples", "200", "--pool", "4", "--newton-iters", "3", "--gd-iters", "10"],
                        ["newton.png", "newton.json"]),
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs(script: str, tmp_path) -> None:
    args, files = RUNS[script]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), "-o", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    for f in files:
        assert (tmp_path / f).stat().st_size > 0


def test_every_experiment_script_is_exercised() -> None:
    scripts = {f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py") and f != "train_mnist.py"}
    assert scripts == set(RUNS)
