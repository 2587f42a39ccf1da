"""benchmarks/compile_time.py: a quick run writes only under results/quick/, never over tracked files, and
its table carries every model and phase it measured."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from benchmarks import compile_time

ROOT = Path(__file__).resolve().parents[2]


def test_quick_runs_write_to_the_ignored_quick_folder() -> None:
    assert compile_time.output_path(None, partial=False) == os.path.join(compile_time.RESULTS, "compile_time.json")
    quick = compile_time.output_path(None, partial=True)
    assert quick == os.path.join(compile_time.RESULTS, "quick", "compile_time.json")
    assert subprocess.run(["git", "check-ignore", "-q", os.path.relpath(quick, ROOT)], cwd=ROOT).returncode == 0


def test_a_partial_run_refuses_a_tracked_file() -> None:
    tracked = os.path.join(compile_time.RESULTS, "cpu_step.json")
    r = subprocess.run(["git", "ls-files", "--error-unmatch", tracked], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, f"{tracked} must be tracked by git (the tests run in a checkout of the project)"
    with pytest.raises(SystemExit, match="refusing to overwrite .*tracked by git"):
        compile_time.output_path(tracked, partial=True)


def test_one_measurement_is_cold_then_cached_with_its_split() -> None:
    r = compile_time.measure([12, 8, 8, 3], 1, "1")
    assert r["kernels"] >= r["kernel_functions"] >= 1 and r["threads"] == 1
    cold = r["cold"]["seconds"]
    assert {"front_end", "fuse_and_plan", "ir_emit", "ir_print", "llvm_optimize", "llvm_codegen", "load"} <= set(cold)
    assert "llvm_optimize" not in r["cached"]["seconds"] and "cache_load" in r["cached"]["seconds"]
    lines = compile_time.table({"tiny": r})
    assert any(line.startswith("tiny") for line in lines) and "llvm_optimize" in "\n".join(lines)
