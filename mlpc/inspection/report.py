"""The self-contained HTML report: stages side by side, kernels with source and roofline, memory lifetimes."""

from __future__ import annotations

import datetime
import statistics
from html import escape
from typing import TYPE_CHECKING

from .diff import side_by_side_html, summary
from .memory import lifetimes_svg
from .roofline import format_rate, roofline_svg

if TYPE_CHECKING:
    from . import Inspection
    from .kernels import KernelInfo
    from .roofline import Machine

MAX_LINES = 3000  # per stage; longer texts (assembly) are cut with a note

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fff}
header{background:#1f3a56;color:#fff;padding:14px 24px} header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{position:sticky;top:0;background:#f4f6f8;border-bottom:1px solid #ccd;padding:6px 24px;z-index:2;font-size:13px}
nav a{margin-right:14px;color:#1f3a56;text-decoration:none} nav a:hover{text-decoration:underline}
main{padding:8px 24px 40px} h2{border-bottom:2px solid #1f3a56;padding-bottom:4px;margin-top:32px}
table.stats td{padding:2px 14px 2px 0} table.stats td:first-child{color:#555}
table.kernels{border-collapse:collapse;font-size:12px} table.kernels th,table.kernels td{border:1px solid #ccd;
padding:3px 7px;text-align:right} table.kernels th{background:#eef1f5;cursor:pointer;user-select:none}
table.kernels td.l{text-align:left;font-family:monospace}
td.memory{background:#e8f6f3} td.compute{background:#eaf2fb}
table.diff{border-collapse:collapse;width:100%;table-layout:fixed;font:12px/1.35 monospace}
table.diff td{white-space:pre-wrap;word-break:break-all;vertical-align:top;padding:0 6px;border-left:1px solid #ddd}
td.del{background:#fde2e1} td.ren{color:#777} td.ann{background:#eaf2fb} td.ins{background:#ddf6e2}
td.gap{background:#f6f6f6} tr.skip td{color:#888;text-align:center;background:#fafafa}
pre{background:#f7f7f9;border:1px solid #e1e1e8;padding:8px;overflow:auto;font-size:12px;max-height:520px}
details{margin:6px 0} summary{cursor:pointer;font-weight:600}
.note{color:#666;font-size:13px} .graph svg{max-width:100%;height:auto} .tabs button{margin:0 4px 4px 0}
.tabs button.on{background:#1f3a56;color:#fff}
"""

JS = """
(function(){
  var tabs=document.querySelectorAll('.tabs button');
  function show(name){
    document.querySelectorAll('.stage').forEach(function(s){s.hidden=(s.id!=='stage-'+name);});
    tabs.forEach(function(b){b.classList.toggle('on',b.dataset.stage===name);});
  }
  tabs.forEach(function(b){b.addEventListener('click',function(){show(b.dataset.stage);});});
  if(tabs.length){show(tabs[tabs.length-1].dataset.stage);}
  var table=document.getElementById('kernel-table');
  if(table){
    table.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
        var dir=th.dataset.dir==='asc'?-1:1; th.dataset.dir=dir===1?'asc':'desc';
        rows.sort(function(a,b){
          var x=a.cells[col].dataset.v, y=b.cells[col].dataset.v;
          if(x!==undefined&&y!==undefined){return dir*(parseFloat(x)-parseFloat(y));}
          return dir*a.cells[col].textContent.localeCompare(b.cells[col].textContent);
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  }
  document.body.setAttribute('data-ready','1');
})();
"""


def build_report(view: Inspection) -> str:
    """Assemble the whole page; runs the kernel timings and (once per machine) the roofline measurement."""
    tr = view.trainer
    stats = view.stats()
    kernels = view.kernels()
    m = view.machine()
    step = view.step_samples()
    lt = view.memory()
    stages = view.stages()
    title = f"mlpc report: @{view.graph('simplified').name}, batch {tr.batch_size}, backend {tr.backend_name}"
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<header><h1>{escape(title)}</h1><p>pipeline {escape(_pipeline(tr))}; generated "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}</p></header>",
             '<nav><a href="#summary">summary</a><a href="#graph">graph</a><a href="#stages">stages</a>'
             '<a href="#kernels">kernels</a><a href="#roofline">roofline</a><a href="#memory">memory</a>'
             '<a href="#passes">passes</a></nav><main>']
    parts.append(_summary(stats.rows(), m, step, kernels))
    parts.append(_graph_section(view))
    parts.append(_stages_section(view, stages))
    parts.append(_kernel_section(kernels, m, view.time_source))
    parts.append('<section id="roofline"><h2>Roofline</h2>'
                 f'<p class="note">Ceilings of this machine: {escape(m.how)}. Peak '
                 f'{escape(format_rate(m.peak_flops, "FLOP/s"))}, DRAM bandwidth '
                 f'{escape(format_rate(m.bandwidth, "B/s"))} '
                 '(dashed: the bandwidth of smaller working sets, which cache-resident kernels are measured '
                 f'against), '
                 f'ridge at {m.ridge:.3g} FLOP/byte. Kernel times: {escape(view.time_source)}. Kernels that do '
                 f'no floating-point work are not plotted.</p>{roofline_svg(m, kernels)}</section>')
    parts.append(_memory_section(lt))
    parts.append('<section id="passes"><h2>Pass timings</h2>'
                 f'<pre>{escape(str(getattr(tr, "pass_timings", "not recorded")))}</pre></section>')
    parts.append(f"</main><script>{JS}</script></body></html>\n")
    return "\n".join(parts)


def _pipeline(tr: object) -> str:
    pipe = getattr(tr, "_pipeline", None)
    return str(pipe()) if callable(pipe) else "?"


def _summary(stat_rows: list[tuple[str, str]], m: Machine, samples: list[float], kernels: list[KernelInfo]) -> str:
    rows = list(stat_rows)
    flops = sum(k.cost.flops for k in kernels)
    if samples:
        step, lo, hi = statistics.median(samples), min(samples), max(samples)
        rows.append(("measured step time", f"{step * 1e3:.3f} ms median of {len(samples)} steps after warm-up "
                                           f"[{lo * 1e3:.3f}-{hi * 1e3:.3f} ms] ({format_rate(flops / step, 'FLOP/s')}"
                                           f" achieved, {100 * flops / step / m.peak_flops:.1f}% of peak)"))
        rows.append(("machine peaks", f"{format_rate(m.peak_flops, 'FLOP/s')} {m.precision} FMA, "
                                      f"{format_rate(m.bandwidth, 'B/s')} DRAM, {m.threads} thread(s)"))
    else:
        rows.append(("measured step time", "not measured: the trainer has no compiled step to run"))
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<section id="summary"><h2>Summary</h2><table class="stats">{body}</table></section>'


def _graph_section(view: Inspection) -> str:
    from .dot import have_dot, render

    dot_text = view.dot("simplified")
    if have_dot():
        svg = render(dot_text, "svg").decode("utf-8", errors="replace")
        svg = svg[svg.find("<svg"):]  # drop the XML prolog and doctype for inline use
        pic = f'<div class="graph">{svg}</div>'
    else:
        pic = ('<p class="note">Graphviz `dot` is not installed, so the graph is shown as DOT source '
               '(install graphviz and regenerate for a picture).</p>')
    return (f'<section id="graph"><h2>Graph (simplified stage)</h2><p class="note">Ops are filled by kernel: '
            f'{escape(view.kernel_plan().grouping)}; edges carry the value types.</p>{pic}'
            f'<details><summary>DOT source</summary><pre>{escape(dot_text)}</pre></details></section>')


def _stages_section(view: Inspection, stages: list[str]) -> str:
    from . import STAGE_HELP

    buttons = "".join(f'<button type="button" data-stage="{escape(s)}">{escape(s)}</button>' for s in stages)
    out = ['<section id="stages"><h2>Stages</h2><p class="note">Each stage beside the one before it; '
           'removed lines are red on the left, added lines green on the right, lines only renumbered grey, '
           'lines that only gained a comment (such as their kernel) blue; source locations are hidden.</p>',
           f'<div class="tabs">{buttons}</div>']
    prev_ir = ""
    prev_name = ""
    for s in stages:
        text = view.ir(s)
        is_ir = text.lstrip().startswith("func @")
        head = f'<h3>{escape(s)}</h3><p class="note">{escape(STAGE_HELP.get(s, ""))}'
        if is_ir and prev_ir:
            head += f" — changes since {escape(prev_name)}: {escape(summary(prev_ir, text))}"
        head += "</p>"
        if is_ir and prev_ir and s != "predict":
            body = side_by_side_html(_cut(prev_ir), _cut(text))
        else:
            body = f"<pre>{escape(_cut(text))}</pre>"
        out.append(f'<div class="stage" id="stage-{escape(s)}">{head}{body}</div>')
        if is_ir and s != "predict":
            prev_ir, prev_name = text, s
    out.append("</section>")
    return "\n".join(out)


def _cut(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= MAX_LINES:
        return text
    return "\n".join(lines[:MAX_LINES]) + f"\n... {len(lines) - MAX_LINES} more lines (see `mlpc dump`)"


def _kernel_section(kernels: list[KernelInfo], m: Machine, time_source: str) -> str:
    head = ["#", "kernel", "ops", "FLOPs", "bytes", "FLOP/byte", "time (µs)", "achieved", "roof at this AI",
            "% of peak", "% of bandwidth", "% of roof", "bound"]
    rows = []
    for n, k in enumerate(kernels):
        ai = k.cost.intensity
        roof = m.attainable(ai, k.cost.bytes) if ai > 0 else 0.0
        got = k.achieved_flops
        f = m.fractions(k)
        bound = f.bound if f is not None else "memory"
        timed = k.seconds is not None
        secs = k.seconds or 0.0
        cells = [
            (str(n), n, ""), (k.name, None, "l"), (" ".join(k.op_names), None, "l"),
            (f"{k.cost.flops:,}", k.cost.flops, ""), (f"{k.cost.bytes:,}", k.cost.bytes, ""),
            (f"{ai:.3g}", ai, ""), (f"{secs * 1e6:.1f}" if timed else "—", secs * 1e6 if timed else -1, ""),
            (format_rate(got, "FLOP/s") if got else "—", got or 0, ""),
            (format_rate(roof, "FLOP/s") if roof else "—", roof, ""),
            *[(f"{100 * v:.1f}%", 100 * v, "") if f is not None else ("—", 0, "")
              for v in ((f.compute, f.memory, f.roof) if f is not None else (0.0, 0.0, 0.0))],
            (bound, None, bound),
        ]
        tds = "".join(f'<td class="{c}"' + (f' data-v="{v}"' if v is not None else "") + f">{escape(t)}</td>"
                      for t, v, c in cells)
        rows.append(f"<tr>{tds}</tr>")
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    sources = "".join(f"<details><summary>{escape(k.name)} <span class=\"note\">({escape(k.source_kind)})</span>"
                      f"</summary><pre>{escape(k.source)}</pre></details>" for k in kernels)
    total = sum(k.seconds or 0 for k in kernels)
    return (f'<section id="kernels"><h2>Kernels ({len(kernels)})</h2><p class="note">Times: {escape(time_source)};'
            f" total {total * 1e3:.3f} ms. FLOPs and bytes come from mlpc.cost (bytes: values crossing the kernel's "
            "boundary). % of peak: achieved FLOP/s over the measured FMA peak; % of bandwidth: bytes/s over the "
            "measured bandwidth for a working set of the kernel's bytes; % of roof: the larger of the two (achieved "
            'over min(peak, FLOP/byte x bandwidth)); none can exceed 100%. Click a column to sort.</p>'
            f'<table class="kernels" id="kernel-table"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}'
            f'</tbody></table><h3>Kernel source</h3>{sources}</section>')


def _memory_section(lt: object) -> str:
    from .memory import Lifetimes

    assert isinstance(lt, Lifetimes)
    rows = "".join(f"<tr><td>%{escape(b.name)}</td><td>{escape(b.type)}</td><td>{b.offset}</td><td>{b.nbytes}</td>"
                   f"<td>k{b.first}..k{b.last}</td></tr>" for b in lt.buffers)
    return (f'<section id="memory"><h2>Memory plan</h2><p class="note">Arena {lt.arena_bytes:,} bytes for '
            f'{len(lt.buffers)} buffers; {escape(lt.source)}. Each box is a buffer: its width is the kernels '
            f'it lives across, its height its bytes at its arena offset.</p>{lifetimes_svg(lt)}'
            '<details><summary>buffers</summary><table class="kernels"><thead><tr><th>value</th><th>type</th>'
            f'<th>offset</th><th>bytes</th><th>live</th></tr></thead><tbody>{rows}</tbody></table></details>'
            '</section>')
