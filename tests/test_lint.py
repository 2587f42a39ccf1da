"""ruff and mypy are part of the test command: the suite fails on any lint or type error."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=1200)


def test_ruff_is_clean():
    r = _run("ruff", "check", "mlpc", "passes", "codegen", "runtime", "tests", "benchmarks", "examples", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean():
    r = _run("mypy")  # packages and options: [tool.mypy] in pyproject.toml
    assert r.returncode == 0, r.stdout + r.stderr
