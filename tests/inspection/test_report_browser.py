"""The HTML report in a real headless Chromium: it renders with no console errors, its scripts work,
and the kernel table is there. A page with planted errors proves the detector sees them."""

from __future__ import annotations

import sys

import pytest

import mlpc
from mlpc.testing.browser import find_chromium, load_page

from . import fakes

QUERIES = {
    "ready": "document.body.getAttribute('data-ready')",
    "rows": "document.querySelectorAll('#kernel-table tbody tr').length",
    "header": "Array.from(document.querySelectorAll('#kernel-table th')).map(th => th.textContent)",
    "visible_stage": "Array.from(document.querySelectorAll('.stage')).filter(s => !s.hidden).map(s => s.id)",
    "after_tab_click": "document.querySelector('.tabs button').click(); "
                       "Array.from(document.querySelectorAll('.stage')).filter(s => !s.hidden).map(s => s.id)",
    "sorted_by_flops": "document.querySelectorAll('#kernel-table th')[3].click(); "
                       "document.querySelectorAll('#kernel-table th')[3].click(); "
                       "Array.from(document.querySelectorAll('#kernel-table tbody tr'))"
                       ".map(r => parseFloat(r.cells[3].dataset.v))",
    "svgs": "document.querySelectorAll('svg').length",
    "roofline_points": "document.querySelectorAll('svg.roofline .kernel-point').length",
    "graph_nodes": "document.querySelectorAll('#graph svg g.node').length",
    "width": "document.querySelector('svg.roofline').getBoundingClientRect().width",
}


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    assert exe, "Chromium is missing: run scripts/setup.d/chromium.sh (scripts/test.sh does)"
    return exe


def _check(view, tmp_path):
    path = tmp_path / "report.html"
    view.report(str(path))
    page = load_page(str(path), QUERIES, screenshot=str(tmp_path / "shot.png"))
    assert page.errors == [], page.errors
    assert page.messages == [], page.messages  # the report logs nothing at all
    assert page.requests == [f"file://{path}"], "the report must not load anything else"
    v = page.values
    assert v["ready"] == "1"
    assert v["rows"] == len(view.kernels()) > 0
    assert v["header"][:6] == ["#", "kernel", "ops", "FLOPs", "bytes", "FLOP/byte"]
    stages = view.stages()
    assert v["visible_stage"] == [f"stage-{stages[-1]}"]
    assert v["after_tab_click"] == [f"stage-{stages[0]}"]
    assert v["sorted_by_flops"] == sorted(v["sorted_by_flops"], reverse=True)
    assert v["svgs"] >= 3 and v["roofline_points"] > 0 and v["width"] > 100
    assert v["graph_nodes"] >= len(view.graph("simplified").ops)
    assert (tmp_path / "shot.png").stat().st_size > 20_000  # a real rendering, not a blank page


def test_report_renders_cleanly(chromium, trainer, tmp_path):
    _check(mlpc.inspect(trainer, repeats=1), tmp_path)


def test_report_with_fused_kernels_renders_cleanly(chromium, trainer, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    monkeypatch.setitem(sys.modules, "passes.memory", fakes.memory_module())
    _check(mlpc.inspect(trainer, repeats=1), tmp_path)


def test_the_detector_sees_planted_errors(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p id='p'>x</p><img src='missing.png'>"
                   "<script>console.error('planted'); console.log('note'); notDefined();</script></body></html>")
    page = load_page(str(bad), {"p": "document.getElementById('p').textContent"})
    assert page.values == {"p": "x"}
    joined = "\n".join(page.errors)
    assert "console.error: planted" in joined
    assert "ReferenceError: notDefined is not defined" in joined
    assert "missing.png" in joined
    assert "console.log: note" in page.messages
