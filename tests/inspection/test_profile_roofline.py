"""Kernel timing (interpreter per op, or a backend's profile hook) and the cached machine roofline."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from codegen.llvm.target import host_target
from mlpc.inspection import roofline
from mlpc.inspection.kernels import plan_kernels
from mlpc.inspection.profile import TimingInterpreter, attach_times, interpreter_op_times, sample_inputs
from mlpc.interpreter import interpret
from runtime import machine_peaks
from runtime.machine_peaks import Peaks

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


def fake_peaks(threads: int = 2, fp32: float = 5e10, dram: float = 5e9) -> "Peaks":
    levels = [[0.0, 4 * dram, 16384.0], [32768.0, 2 * dram, 1 << 19], [float(1 << 20), dram, 1 << 26]]
    return Peaks(threads, fp32, 2 * fp32, levels, 2.5e9, {}, "test", "host")


def test_peaks_are_measured_once_per_host_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_measure(threads=None):
        calls.append(threads)
        return fake_peaks(threads)

    monkeypatch.setattr(machine_peaks, "measure", fake_measure)
    p1 = machine_peaks.peaks(2)
    p2 = machine_peaks.peaks(2)
    assert calls == [2] and p1 == p2
    saved = json.loads((tmp_path / machine_peaks.CACHE_FILE).read_text())
    assert saved["version"] == machine_peaks.VERSION and list(saved["hosts"]) == [machine_peaks.host_key(2)]
    machine_peaks.peaks(1)  # another thread count is another entry
    assert calls == [2, 1] and len(json.loads((tmp_path / machine_peaks.CACHE_FILE).read_text())["hosts"]) == 2
    machine_peaks.peaks(2, refresh=True)
    assert calls == [2, 1, 2]
    m = roofline.machine(threads=2)
    assert m.peak_flops == 1e11 and m.bandwidth == 1e10 and m.ridge == pytest.approx(10.0)
    assert roofline.machine(threads=2, precision="bf16").peak_flops == 2e11


def test_a_cache_of_another_version_is_refused_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(machine_peaks, "measure", lambda threads=None: fake_peaks(threads))
    (tmp_path / machine_peaks.CACHE_FILE).write_text(json.dumps({"version": 99, "hosts": {}}))
    assert machine_peaks.peaks(2).fp32_per_thread == 5e10
    assert "format version 99, this mlpc reads version 1" in capsys.readouterr().err
    assert json.loads((tmp_path / machine_peaks.CACHE_FILE).read_text())["version"] == machine_peaks.VERSION


def test_a_corrupt_or_unwritable_cache_still_gives_peaks(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path / "file-not-dir"))
    (tmp_path / "file-not-dir").write_text("x")
    monkeypatch.setattr(machine_peaks, "measure", lambda threads=None: fake_peaks(threads, fp32=1e9))
    assert machine_peaks.peaks(2).fp32_per_thread == 1e9
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    (tmp_path / machine_peaks.CACHE_FILE).write_text("{not json")
    assert machine_peaks.peaks(2).fp32_per_thread == 1e9


def test_bandwidth_ceiling_follows_the_working_set_per_thread():
    p = fake_peaks(threads=2, dram=5e9)
    assert p.bandwidth(1000, 1) == 2e10          # fits in the fastest level
    b = 2 << 20                                   # 2 MiB on one thread: 1 MiB at most from the faster caches
    assert p.bandwidth(b, 1) == pytest.approx(min(2e10, 1e10 * b / (b - 32768), 5e9 * b / (b - (1 << 20))))
    assert p.bandwidth(2 * b, 2) == pytest.approx(2 * p.bandwidth(b, 1))  # per thread
    assert p.bandwidth(1e12, 2) == pytest.approx(p.dram_bandwidth(2), rel=1e-5) and p.dram_bandwidth(2) == 1e10


def test_measure_gives_plausible_numbers_from_the_llvm_kernels():
    p = machine_peaks.measure(threads=1, repeats=3, seconds=0.0005)
    # loose bounds: a loaded CI machine can be slow, but never this slow or impossibly fast
    assert 1e8 < p.fp32_per_thread < 1e13 and 1e8 < p.tsc_hz < 1e11
    assert [a for a, _r, _s in p.bandwidth_per_thread] == sorted(a for a, _r, _s in p.bandwidth_per_thread)
    assert all(1e7 < r < 1e13 for _a, r, _s in p.bandwidth_per_thread)
    assert p.threads == 1 and "LLVM kernels" in p.how
    assert (p.bf16_per_thread is not None) == ("+avx512bf16" in host_target().features.split(","))


def test_cache_lives_beside_the_compile_cache(monkeypatch):
    monkeypatch.delenv("MLPC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert machine_peaks.cache_path() == os.path.join("/x/cache", "mlpc", machine_peaks.CACHE_FILE)
    monkeypatch.setenv("MLPC_CACHE_DIR", "off")
    assert machine_peaks.cache_path() is None


def test_roofline_svg_plots_timed_kernels_that_do_flops(trainer):
    kp = plan_kernels(trainer.graph("simplified"), use_fusion=False)
    attach_times(kp, repeats=1)
    m = roofline.Machine(fake_peaks(threads=2), 2)
    svg = roofline.roofline_svg(m, kp.kernels)
    plotted = [k for k in kp.kernels if k.cost.flops > 0]
    assert svg.count('class="kernel-point"') == len(plotted) > 0
    assert 'class="roof"' in svg and svg.startswith("<svg") and svg.endswith("</svg>")
    assert "peak 100 GFLOP/s" in svg


def test_a_spot_check_only_ever_raises_the_cached_peak(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(machine_peaks, "measure", lambda threads=None: fake_peaks(threads, fp32=1.0))
    assert machine_peaks.peaks(1).fp32_per_thread == 1.0
    raised = machine_peaks.peaks(1, spot_check=True)  # the real FMA kernel measures more than 1 FLOP/s
    assert raised.fp32_per_thread > 1.0 and machine_peaks.peaks(1) == raised  # and the cache keeps it
    monkeypatch.setattr(machine_peaks, "measure", lambda threads=None: fake_peaks(threads, fp32=1e15))
    machine_peaks.peaks(1, refresh=True)
    assert machine_peaks.peaks(1, spot_check=True).fp32_per_thread == 1e15  # never lowered
