"""Buffer lifetimes, DOT pictures and stage diffs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mlpc.errors import MlpcError
from mlpc.inspection import dot as dotmod
from mlpc.inspection.diff import op_counts, side_by_side_html, summary
from mlpc.inspection.kernels import plan_kernels
from mlpc.inspection.memory import lifetimes, lifetimes_svg

from . import fakes


def _no_overlap(bufs):
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            time_overlap = not (a.last < b.first or b.last < a.first)
            addr_overlap = not (a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset)
            assert not (time_overlap and addr_overlap), (a, b)


def test_estimated_plan_never_overlaps_live_buffers_and_fits_the_arena(trainer):
    kp = plan_kernels(trainer.graph("simplified"), use_fusion=False)
    lt = lifetimes(kp)
    assert lt.source.startswith("estimate")
    _no_overlap(lt.buffers)
    assert all(b.offset % 64 == 0 and b.offset + b.nbytes <= lt.arena_bytes for b in lt.buffers)
    for step in range(lt.steps + 1):  # the arena holds at least what is live at once
        assert lt.arena_bytes >= sum(b.nbytes for b in lt.buffers if b.first <= step <= b.last)
    # reuse: the arena is smaller than giving every buffer its own bytes
    assert lt.arena_bytes < sum((b.nbytes + 63) // 64 * 64 for b in lt.buffers)
    names = {b.name for b in lt.buffers}
    assert "0" in names  # the first matmul's result crosses into the bias add


def test_memory_pass_plan_is_used_with_the_fusion_plan(trainer, monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    monkeypatch.setitem(sys.modules, "passes.memory", fakes.memory_module())
    kp = plan_kernels(trainer.graph("simplified"))
    lt = lifetimes(kp)
    expected = fakes.plan_memory(kp.fusion_plan)
    assert lt.source.startswith("passes.memory") and lt.arena_bytes == expected.arena_bytes
    assert len(lt.buffers) == len(expected.slots) and lt.steps == len(kp.kernels)
    svg = lifetimes_svg(lt)
    assert svg.count('class="buffer"') == len(lt.buffers)


def test_dot_has_every_op_and_typed_edges(trainer):
    g = trainer.graph("simplified")
    kp = plan_kernels(g, use_fusion=False)
    text = dotmod.to_dot(g, kp)
    assert text.startswith("digraph mlpc {") and text.rstrip().endswith("}")
    for i, op in enumerate(g.ops):
        assert f"op{i} [shape=box" in text
        for v in op.operands:
            assert f'-> op{i} [label="{v.type}"];' in text
    assert text.count("shape=note") == len(g.outputs)
    assert 'label="0.weight (param)"' in text and "cluster_" not in text


def test_dot_clusters_fused_kernels(trainer, monkeypatch):
    monkeypatch.setitem(sys.modules, "passes.fusion", fakes.fusion_module())
    kp = plan_kernels(trainer.graph("simplified"))
    text = dotmod.to_dot(kp.graph, kp)
    for k in kp.kernels:
        assert f'subgraph "cluster_{k.name}"' in text
    fills = {line.split('fillcolor="')[1][:7] for line in text.splitlines() if "[shape=box" in line}
    assert len(fills) >= min(len(kp.kernels), len(dotmod.PALETTE)) - 1


def test_render_svg_and_png(trainer):
    assert shutil.which("dot"), "Graphviz is missing: run scripts/setup.d/graphviz.sh (scripts/test.sh does)"
    text = dotmod.to_dot(trainer.graph("simplified"))
    svg = dotmod.render(text, "svg")
    assert b"<svg" in svg and b"matmul" in svg
    assert dotmod.render(text, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    out = subprocess.run(["dot", "-Tcanon"], input=text.encode(), capture_output=True)
    assert out.returncode == 0, out.stderr


def test_render_without_graphviz_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MlpcError) as e:
        dotmod.render("digraph { a }", "svg")
    assert "Graphviz `dot` program is not on PATH" in str(e.value) and "apt-get install graphviz" in str(e.value)
    assert "--format dot" in str(e.value)


def test_diff_summary_and_side_by_side():
    before = "func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0: f32[2] = exp %x\n  %1: f32[2] = exp %x\n" \
             "  %2: f32[2] = add %0, %1\n  return %2\n}\n"
    after = "func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0: f32[2] = exp %x\n  %1: f32[2] = add %0, %0\n" \
            "  return %1\n}\n"
    assert op_counts(before) == {"exp": 2, "add": 1}
    assert summary(before, after) == "-1 exp"
    assert summary(after, after) == "unchanged"
    html = side_by_side_html(before, after)
    assert html.count('class="del"') >= 1 and html.count('class="ins"') >= 1
    assert '<td class="ins">  %1: f32[2] = add %0, %0</td>' in html  # operands changed: a real change
    assert html.count("exp %x</td>") == 3  # one exp removed, the other kept (maybe renumbered)


def test_renumbered_lines_are_not_changes():
    a = "  %0: f32[] = full {value = 1.0}\n  %1: f32[2] = exp %x\n  return %1"
    b = "  %0: f32[2] = exp %x\n  return %0"
    html = side_by_side_html(a, b)
    assert html.count('class="ren"') == 4  # two lines, both sides
    assert html.count('class="del"') == 1 and 'class="ins"' not in html


def test_annotations_are_not_changes():
    a = "  %0: f32[2] = exp %x\n  return %0"
    b = "  %0: f32[2] = exp %x  // k0_elementwise\n  return %0"
    html = side_by_side_html(a, b)
    assert html.count('class="ann"') == 2 and 'class="del"' not in html and 'class="ins"' not in html
