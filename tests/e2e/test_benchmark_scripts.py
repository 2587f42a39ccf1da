"""benchmarks/cpu_step.py reports median [min-max] and never lets a quick run overwrite committed results;
benchmarks/fma_peak.py's kernel computes what it claims (16 independent FMA chains)."""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks import cpu_step, fma_peak

ROOT = Path(__file__).resolve().parents[2]


def test_spread_is_median_min_max() -> None:
    assert cpu_step.spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert cpu_step.fmt(cpu_step.spread([3.0, 1.0, 2.0])) == "2.0 [1.0-3.0]"
    assert cpu_step.fmt(None) == "n/a"


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"json": None, **kw})


def test_quick_or_partial_runs_write_to_the_ignored_quick_folder() -> None:
    committed = os.path.join(cpu_step.RESULTS, "cpu_step.json")
    assert cpu_step.output_path(_args(), partial=False) == committed
    quick = cpu_step.output_path(_args(), partial=True)
    assert quick == os.path.join(cpu_step.RESULTS, "quick", "cpu_step.json")
    r = subprocess.run(["git", "check-ignore", "-q", os.path.relpath(quick, ROOT)], cwd=ROOT)
    assert r.returncode == 0  # git ignores it


def test_a_partial_run_refuses_a_tracked_results_file() -> None:
    committed = os.path.join(cpu_step.RESULTS, "cpu_step.json")
    r = subprocess.run(["git", "ls-files", "--error-unmatch", committed], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, f"{committed} must be tracked by git (the tests run in a checkout of the project)"
    with pytest.raises(SystemExit, match="refusing to overwrite .*tracked by git"):
        cpu_step.output_path(_args(json=committed), partial=True)
    assert cpu_step.output_path(_args(json=committed), partial=False) == committed


def test_cpu_step_main_refuses_quick_onto_committed_results_before_measuring() -> None:
    committed = os.path.join(cpu_step.RESULTS, "cpu_step.json")
    r = subprocess.run(["git", "ls-files", "--error-unmatch", committed], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, f"{committed} must be tracked by git (the tests run in a checkout of the project)"
    before = Path(committed).read_bytes()
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        cpu_step.main(["--quick", "--json", committed])
    assert Path(committed).read_bytes() == before


def test_fma_kernel_computes_sixteen_fma_chains() -> None:
    fn, _engine, lanes = fma_peak.compile_kernel()
    a = np.linspace(0.5, 1.5, lanes, dtype=np.float32)
    b = np.linspace(0.9, 0.1, lanes, dtype=np.float32)
    buf = (ctypes.c_float * (2 * lanes))(*a, *b)
    fn(3, ctypes.addressof(buf))
    acc = a.astype(np.float64)
    for _ in range(3):
        acc = acc * b + a
    np.testing.assert_allclose(np.frombuffer(buf, np.float32)[:lanes], fma_peak.ACCUMULATORS * acc, rtol=4e-6)
    # float32: 3 fused steps and 15 additions, each within 2^-24 relative: at most ~1.1e-6 from the f64 value


def test_cpu_step_has_issue_16_shapes_in_fp32_and_bf16_without_duplicates() -> None:
    full = cpu_step.configs(quick=False, shapes=None)
    keys = [(tuple(c[1]), c[2], c[3], c[4], c[5]) for c in full]
    assert len(keys) == len(set(keys))
    for name, (sizes, act) in cpu_step.SHAPES.items():
        for precision in cpu_step.PRECISIONS:
            assert {c[5] for c in full if c[1] == sizes and c[2] == act and c[3] == "adam" and c[4] == precision} \
                == set(cpu_step.BATCHES), (name, precision)
    depth20 = cpu_step.SHAPES["depth20-w256 tanh"][0]
    assert len(depth20) - 1 == 20 and set(depth20[1:-1]) == {256}
    quick = cpu_step.configs(quick=True, shapes=None)
    assert {c[0] for c in quick} == {"784-256-256-10", "784-256-256-10 relu"}
    assert {c[4] for c in quick} == {"fp32", "bf16"}


def test_mlpc_bf16_column_says_unsupported_instead_of_crashing() -> None:
    import inspect

    import mlpc

    if "precision" in inspect.signature(mlpc.compile).parameters:
        tr = cpu_step.make_mlpc([4, 3, 2], "adam", 1e-3, 2, "tanh", "bf16")
        assert tr.step(np.ones((2, 4), np.float32), np.zeros(2, np.int32)) > 0
    else:
        with pytest.raises(cpu_step.Unsupported, match="precision= not supported"):
            cpu_step.make_mlpc([4, 3, 2], "adam", 1e-3, 2, "tanh", "bf16")


def test_bf16_step_quick_run_refuses_committed_results_before_measuring() -> None:
    from benchmarks import bf16_step

    committed = os.path.join(cpu_step.RESULTS, "cpu_step.json")
    before = Path(committed).read_bytes()
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        bf16_step.main(["--quick", "--json", committed])
    assert Path(committed).read_bytes() == before
    assert bf16_step.ratio({"median": 6.0}, {"median": 2.0}) == 3.0 and bf16_step.ratio(None, {"median": 1.0}) is None
