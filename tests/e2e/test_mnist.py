"""The README's main job: `mlpc train` on MNIST reaches >= 97.5% test accuracy in 5 epochs."""

import subprocess
import sys


def test_mlpc_train_default_reaches_97_5_percent():
    r = subprocess.run([sys.executable, "-m", "mlpc.cli", "train", "--epochs", "5", "--backend", "numpy",
                        "--no-progress"], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy:")
    assert float(last.split(":")[1].split("%")[0]) >= 97.5, r.stdout
