"""The example model files train from the CLI."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = sorted(f for f in os.listdir(os.path.join(ROOT, "examples", "models")) if f.endswith(".py"))


@pytest.mark.parametrize("name", MODELS)
def test_example_model_trains(name):
    r = subprocess.run([sys.executable, "-m", "mlpc.cli", "train", os.path.join(ROOT, "examples", "models", name),
                        "--epochs", "1", "--limit", "3000", "--no-progress", "--backend", "numpy"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip().splitlines()[-1].split(":")[1].split("%")[0]) > 70.0
