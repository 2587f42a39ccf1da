"""Kernel timing (interpreter per op, or a backend's profile hook) and the cached machine roofline."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from mlpc.inspection import roofline
from mlpc.inspection.kernels import plan_kernels
from mlpc.inspection.profile import TimingInterpreter, attach_times, interpreter_op_times, sample_inputs
from mlpc.interpreter import interpret

from . import fakes


def test_timing_interpreter_times_every_op_and_computes_the_same_outputs(trainer):
    g = trainer.graph("simplified")
    inputs = sample_inputs(g)
    timed = TimingInterpreter(g)
    out = timed.run(inputs)
    ref = interpret(g, inputs)
    assert set(out) == set(ref)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])
    assert sorted(timed.samples) == list(range(len(g.ops)))
    assert all(t[0] > 0 for t in timed.samples.values())


def test_sample_inputs_are_valid_labels_and_zero_state(trainer):
    g = trainer.graph("simplified")
    inp = sample_inputs(g)
    assert inp["y"].dtype == np.int32 and inp["y"].min() >= 0 and inp["y"].max() < 3
    assert not inp["adam.m.0.weight"].any() and inp["t"] == 0
    assert np.isfinite(interpret(g, inp)["loss"])


def test_kernel_time_is_the_sum_of_its_ops(trainer, monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    kp = plan_kernels(trainer.graph("simplified"))
    source = attach_times(kp, repeats=3)
    assert "NumPy interpreter, summed over each kernel's ops (median of 3 runs)" == source
    assert all(k.seconds is not None and k.seconds > 0 for k in kp.kernels)
    per_op = interpreter_op_times(kp.graph, repeats=3)
    assert len(per_op) == len(kp.graph.ops)


def test_a_backend_profile_hook_is_preferred(trainer, monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    g = trainer.graph("simplified")
    kp = plan_kernels(g)
    source = attach_times(kp, repeats=2, compiled=fakes.ProfiledCompiled(g), to_device=np.array,
                          backend_name="fake-llvm")
    assert source == "measured per kernel by the fake-llvm backend's profiler (median of 2)"
    assert [k.seconds for k in kp.kernels] == pytest.approx([1e-6 * (n + 1) for n in range(len(kp.kernels))])


def test_roofline_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_measure():
        calls.append(1)
        return roofline.Machine(2e11, 1e10, "test", roofline.fingerprint())

    monkeypatch.setattr(roofline, "measure", fake_measure)
    m1 = roofline.machine()
    m2 = roofline.machine()
    assert len(calls) == 1 and m1 == m2
    saved = json.loads((tmp_path / "roofline.json").read_text())
    assert saved["peak_flops"] == 2e11 and saved["fingerprint"] == roofline.fingerprint()
    assert m1.ridge == pytest.approx(20.0)
    assert m1.attainable(1.0) == 1e10 and m1.attainable(100.0) == 2e11
    roofline.machine(refresh=True)
    assert len(calls) == 2
    saved["fingerprint"] = "another machine"
    (tmp_path / "roofline.json").write_text(json.dumps(saved))
    roofline.machine()
    assert len(calls) == 3  # a cache from another machine is not trusted


def test_a_corrupt_or_unwritable_cache_still_gives_a_roofline(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path / "file-not-dir"))
    (tmp_path / "file-not-dir").write_text("x")
    monkeypatch.setattr(roofline, "measure", lambda: roofline.Machine(1e9, 1e9, "t", "fp"))
    assert roofline.machine().peak_flops == 1e9


def test_measure_gives_plausible_numbers():
    m = roofline.measure(n=128, copy_mib=4, repeats=3)
    # loose bounds: a loaded 2-core CI machine can be slow, but never this slow or impossibly fast
    assert 1e6 < m.peak_flops < 1e15 and 1e6 < m.bandwidth < 1e14
    assert m.fingerprint == roofline.fingerprint() and "128^3" in m.how


def test_cache_dir_defaults(monkeypatch):
    monkeypatch.delenv("MLPC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert roofline.cache_dir() == os.path.join("/x/cache", "mlpc")


def test_roofline_svg_plots_timed_kernels_that_do_flops(trainer):
    kp = plan_kernels(trainer.graph("simplified"), use_fusion=False)
    attach_times(kp, repeats=1)
    m = roofline.Machine(1e11, 1e10, "test", "fp")
    svg = roofline.roofline_svg(m, kp.kernels)
    plotted = [k for k in kp.kernels if k.cost.flops > 0]
    assert svg.count('class="kernel-point"') == len(plotted) > 0
    assert 'class="roof"' in svg and svg.startswith("<svg") and svg.endswith("</svg>")
    assert "peak 100 GFLOP/s" in svg
