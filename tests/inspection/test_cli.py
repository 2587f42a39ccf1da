"""The inspection CLI: dump --format/-o, report, stats, and their error messages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

MODEL = """
from mlpc import nn, optim
model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 4))
optimizer = optim.Adam(lr=0.01)
batch_size = 8
"""


def mlpc(*args, cwd=None, env=None, text=True):
    return subprocess.run([sys.executable, "-m", "mlpc.cli", *args], capture_output=True, text=text, cwd=cwd,
                          env=env, timeout=600)


def _model(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    return str(tmp_path / "model.py")


def test_dump_svg_and_png_files(tmp_path):
    model = _model(tmp_path)
    r = mlpc("dump", model, "--backend", "numpy", "--format", "svg", "-o", str(tmp_path / "g.svg"))
    assert r.returncode == 0, r.stderr
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "adam_update" in svg and "f32[8,10]" in svg
    r = mlpc("dump", model, "--backend", "numpy", "--stage", "traced", "--format", "png", "-o",
             str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dump_png_to_a_pipe_is_binary(tmp_path):
    r = mlpc("dump", _model(tmp_path), "--backend", "numpy", "--format", "png", text=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_without_graphviz_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(tmp_path)  # an empty folder: no `dot`
    r = mlpc("dump", _model(tmp_path), "--backend", "numpy", "--format", "svg", env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("mlpc dump: error: the Graphviz `dot` program is not on PATH, so --format svg")
    assert "apt-get install graphviz" in r.stderr and "Traceback" not in r.stderr
    r = mlpc("dump", _model(tmp_path), "--backend", "numpy", "--format", "dot", env=env)
    assert r.returncode == 0 and r.stdout.startswith("digraph mlpc {")


def test_dump_output_file_and_bad_folder(tmp_path):
    model = _model(tmp_path)
    r = mlpc("dump", model, "--backend", "numpy", "--stage", "autodiff", "-o", str(tmp_path / "ad.mlpc"))
    assert r.returncode == 0 and r.stdout == ""
    assert "grad.0.weight" in (tmp_path / "ad.mlpc").read_text()
    r = mlpc("dump", model, "--backend", "numpy", "-o", str(tmp_path / "no" / "such" / "dir" / "x.mlpc"))
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def test_dump_text_round_trips_through_opt(tmp_path):
    r = mlpc("dump", _model(tmp_path), "--backend", "numpy", "--stage", "traced")
    (tmp_path / "t.mlpc").write_text(r.stdout)
    r = mlpc("opt", str(tmp_path / "t.mlpc"), "-p", "autodiff,adam,simplify")
    assert r.returncode == 0, r.stderr
    r2 = mlpc("dump", _model(tmp_path), "--backend", "numpy", "--stage", "simplified")
    assert r.stdout == r2.stdout


def test_report_writes_html(tmp_path):
    out = tmp_path / "r.html"
    r = mlpc("report", _model(tmp_path), "--backend", "numpy", "-o", str(out), "--repeats", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out} (") and re.search(r"\d stages, \d+ kernels", r.stdout)
    html = out.read_text()
    assert 'id="kernel-table"' in html and "<svg" in html
    r = mlpc("report", _model(tmp_path), "--backend", "numpy", "--repeats", "0")
    assert r.returncode == 2 and "argument --repeats: expected an integer in [1, 100000], got 0" in r.stderr


def test_stats_text_and_json(tmp_path):
    model = _model(tmp_path)
    r = mlpc("stats", model, "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "parameters             94 (376 B)"  # 10*6 + 6 + 6*4 + 4
    r = mlpc("stats", model, "--backend", "numpy", "--json")
    data = json.loads(r.stdout)
    assert data["parameters"] == 94 and data["batch_size"] == 8
    assert data["flops_per_step"] > 3 * 2 * 8 * (10 * 6 + 6 * 4)  # forward + two backward matmuls per layer
    assert data["kernels"] > 0 and data["arena_bytes"] > 0
