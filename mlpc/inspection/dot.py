"""Graph pictures: Graphviz DOT text with ops coloured by kernel and edges labelled with types; svg/png via `dot`."""

from __future__ import annotations

import json
import shutil
import subprocess

from mlpc.errors import MlpcError
from mlpc.ir import Graph
from mlpc.printer import value_names

from .kernels import KernelPlan

PALETTE = ["#aed6f1", "#a9dfbf", "#f9e79f", "#f5cba7", "#d7bde2", "#a3e4d7", "#fadbd8", "#d5dbdb",
           "#abebc6", "#fad7a0", "#d6eaf8", "#e8daef"]
KIND_COLORS = {"matmul": "#aed6f1", "elementwise": "#a9dfbf", "reduction": "#f9e79f", "loss": "#f5cba7",
               "optimizer": "#d7bde2", "shape": "#d5dbdb", "constant": "#eeeeee", "other": "#fadbd8"}
ROLE_COLORS = {"data": "#ffffff", "param": "#fff3c4", "state": "#e3f2fd", "hyper": "#e8f5e9"}

NO_DOT = ("the Graphviz `dot` program is not on PATH, so --format {fmt} cannot be made; "
          "install Graphviz (Debian/Ubuntu: apt-get install graphviz, macOS: brew install graphviz) "
          "or use --format dot and render it elsewhere")


def _q(s: str) -> str:
    return json.dumps(s)


def to_dot(graph: Graph, kp: KernelPlan | None = None, title: str = "") -> str:
    """DOT text: inputs as ellipses (by role), ops as boxes filled by kernel, outputs as notes.

    With a fused plan, each kernel is a labelled cluster and its ops share a colour; without one,
    ops are coloured by op kind.
    """
    from mlpc.ops import registry

    names = value_names(graph)
    node: dict[int, str] = {}
    lines = ["digraph mlpc {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    label = title or f"@{graph.name}"
    if kp is not None:
        label += "\\n" + kp.grouping + ("; colour = kernel" if kp.fused else "; colour = op kind")
    lines.append(f'  labelloc=t; label="{_esc(label)}";')
    for n, inp in enumerate(graph.inputs):
        nid = f"in{n}"
        node[id(inp.value)] = nid
        lines.append(f'  {nid} [shape=ellipse, style=filled, fillcolor="{ROLE_COLORS.get(inp.role, "#fff")}", '
                     f'label={_q(inp.name + (" (" + inp.role + ")" if inp.role != "data" else ""))}];')
    kernel_of = kp.kernel_of_op() if kp is not None else {}
    color_of: dict[str, str] = {}
    if kp is not None and kp.fused:
        for n, kern in enumerate(kp.kernels):
            color_of[kern.name] = PALETTE[n % len(PALETTE)]
    body: dict[str, list[str]] = {}
    for i, op in enumerate(graph.ops):
        nid = f"op{i}"
        for r in op.results:
            node[id(r)] = nid
        k = kernel_of.get(i)
        if k is not None and k.name in color_of:
            fill = color_of[k.name]
        else:
            fill = KIND_COLORS.get(registry.get(op.name).kind, "#ffffff")
        res = ", ".join("%" + names[r] for r in op.results)
        text = f"{op.name}\\n{res}"
        attr = _short_attrs(op.attrs)
        if attr:
            text += f"\\n{attr}"
        line = (f'{nid} [shape=box, style="rounded,filled", fillcolor="{fill}", '
                f'label="{_esc(text)}", tooltip={_q(k.name if k else op.name)}];')
        body.setdefault(k.name if (k is not None and kp is not None and kp.fused) else "", []).append(line)
    for key, ops in body.items():
        if key:
            lines.append(f"  subgraph {_q('cluster_' + key)} {{")
            lines.append(f'    label={_q(key)}; style="dashed"; color="#888888"; fontsize=10;')
            lines += ["    " + s for s in ops]
            lines.append("  }")
        else:
            lines += ["  " + s for s in ops]
    for n, out in enumerate(graph.outputs):
        nid = f"out{n}"
        lines.append(f'  {nid} [shape=note, style=filled, fillcolor="#f2f3f4", label={_q(out.name)}];')
        src = node.get(id(out.value))
        if src is not None:
            lines.append(f"  {src} -> {nid} [label={_q(str(out.value.type))}];")
    for i, op in enumerate(graph.ops):
        seen: set[int] = set()
        for v in op.operands:
            if id(v) in seen or id(v) not in node:
                continue
            seen.add(id(v))
            lines.append(f"  {node[id(v)]} -> op{i} [label={_q(str(v.type))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc(s: str) -> str:
    return s.replace('"', '\\"')


def _short_attrs(attrs: dict) -> str:
    from mlpc.printer import format_attr

    keep = []
    for k, v in attrs.items():
        if k in ("transpose_a", "transpose_b") and v:
            keep.append(k)
        elif k in ("axes", "perm", "value", "alpha", "exponent", "lr"):
            keep.append(f"{k}={format_attr(v)}")
    return " ".join(keep)[:40]


def have_dot() -> bool:
    return shutil.which("dot") is not None


def render(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz `dot -T<fmt>`; a clear MlpcError when it is not installed or fails."""
    if fmt not in ("svg", "png"):
        raise MlpcError(f"cannot render format {fmt!r}; use svg or png")
    exe = shutil.which("dot")
    if exe is None:
        raise MlpcError(NO_DOT.format(fmt=fmt))
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise MlpcError("Graphviz `dot` took over 120 s; use --format dot for large graphs") from None
    if proc.returncode != 0:
        raise MlpcError(f"Graphviz `dot` failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
