"""No kernel runs above its ceiling: every fraction of peak, bandwidth and roof that `mlpc report` and `mlpc stats`
show is at most 100%, for real models on the llvm (1 and 2 threads) and numpy backends.

Why this holds on any host, loaded or not (runtime/machine_peaks.py): a ceiling is the maximum over many
short single-thread runs times the thread count, which noise can only lower towards the true single-thread
rate, and a kernel's time is the median of cycle-counter spans that enclose all threads' work on it (barriers
before and after it in the profiling build), converted with the measured counter rate, which noise can
only lengthen. No margin is added: a fraction above 1 means a wrong ceiling, cost or time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import mlpc
from codegen.llvm.target import host_target
from mlpc import nn, optim
from mlpc.inspection import Inspection
from mlpc.inspection.kernels import plan_kernels
from mlpc.inspection.profile import attach_times
from mlpc.inspection.roofline import Machine
from runtime.llvm_backend import lower_graph
from runtime.machine_peaks import peaks

MODELS = {
    "784-256-10 relu": (lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), 64),
    "64-64-64-4 tanh": (lambda: nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                              nn.Linear(64, 4)), 32),
    "2-2-2 relu": (lambda: nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)), 1),
}


def _check(m: Machine, view_kernels: list) -> int:
    checked = 0
    for k in view_kernels:
        f = m.fractions(k)
        if f is None:
            continue
        assert 0 <= f.compute <= 1 and 0 <= f.memory <= 1 and f.roof <= 1, (k.name, f, k.cost, k.seconds)
        checked += 1
    return checked


@pytest.mark.parametrize("backend", ["llvm", "numpy"])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_kernel_is_at_most_its_roof(name, backend):
    make, batch = MODELS[name]
    tr = mlpc.compile(make(), nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=batch, backend=backend)
    view = Inspection(tr, repeats=5)
    kernels = view.kernels()
    assert _check(view.machine(), kernels) == sum(k.seconds is not None and k.cost.bytes > 0 for k in kernels) > 0


def test_a_two_thread_profile_is_at_most_its_roof():
    """Threaded kernels split across two workers: the timed span covers both threads' shares."""
    make, batch = MODELS["784-256-10 relu"]
    tr = mlpc.compile(make(), nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=batch, backend="numpy")
    g = tr.graph("simplified")
    compiled = lower_graph(g, target=host_target(2))
    assert compiled.meta["threads"] == 2
    kp = plan_kernels(g)
    assert "profiler" in attach_times(kp, 5, compiled, np.array, "llvm")
    assert _check(Machine(peaks(2), 2), kp.kernels) == len(kp.kernels) > 0


def test_report_and_stats_show_no_fraction_above_100_percent(tmp_path):
    args = ["examples/models/mnist_mlp.py", "--batch-size", "32"]
    out = subprocess.run([sys.executable, "-m", "mlpc.cli", "stats", *args, "--roofline", "--json"],
                         capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)["roofline"]
    assert data["kernels"] and data["peak_flops"] > 0 and data["dram_bandwidth"] > 0
    for row in data["kernels"]:
        assert max(row["fraction_of_peak"], row["fraction_of_bandwidth"]) == row["fraction_of_roof"] <= 1, row
    html = tmp_path / "r.html"
    subprocess.run([sys.executable, "-m", "mlpc.cli", "report", *args, "-o", str(html), "--repeats", "3"],
                   capture_output=True, text=True, check=True)
    page = html.read_text()
    table = page[page.index('id="kernel-table"'):page.index("</table>", page.index('id="kernel-table"'))]
    percents = [float(v) for v in re.findall(r">(\d+(?:\.\d+)?)%<", table)]
    assert percents and max(percents) <= 100.0
    assert re.search(r"median of \d+ steps after warm-up \[[\d.]+-[\d.]+ ms\]", page)


def test_interpreter_views_move_no_bytes():
    """reshape/transpose/broadcast_to are NumPy views in the interpreter: timed there, they move nothing, so
    the bytes of their cost must not be divided by their (tiny) time."""
    from mlpc.ir import Graph, Input, Output, Value
    from mlpc.ops import Builder
    from mlpc.types import f32

    b = Builder()
    a = Value(f32(512, 256), "a")
    t = b.transpose(a)
    r = b.reshape(t, shape=(256 * 512,))
    g = Graph("views", [Input("a", a, "param")], b.ops, [Output("r", r)])
    kp = plan_kernels(g, use_fusion=False)
    source = attach_times(kp, 3)
    assert "2 kernel(s) of only broadcast_to/reshape/transpose are NumPy views" in source
    assert all(k.cost.bytes == 0 for k in kp.kernels)
    assert _check(Machine(peaks(1), 1), kp.kernels) == 0
