"""Prints a graph as textual IR that `mlpc.parser.parse` reads back to an equal graph."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from mlpc.ir import Graph, Value, same_attr

NAME_RE = re.compile(r"^[A-Za-z0-9_.]+$")


def format_attr(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if v is None:
        return "none"
    raise TypeError(f"attribute value {v!r} has no textual form")


def format_attrs(attrs: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    """`{k = v, ...}` for the attributes that differ from the op's defaults."""
    shown = {k: v for k, v in attrs.items() if defaults is None or k not in defaults
             or not same_attr(defaults[k], v) or type(defaults[k]) is not type(v)}
    if not shown:
        return ""
    return " {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in shown.items()) + "}"


def format_output_name(name: str) -> str:
    return name if re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", name) and name not in _KEYWORDS else json.dumps(name)


_KEYWORDS = {"true", "false", "none", "inf", "nan", "data", "param", "state", "hyper", "func", "return", "loc"}


def value_names(g: Graph) -> dict[Value, str]:
    """Inputs keep their names; op results are numbered %0, %1, ... skipping clashes."""
    names: dict[Value, str] = {i.value: i.name for i in g.inputs}
    taken = set(names.values())
    n = 0
    for op in g.ops:
        for r in op.results:
            while str(n) in taken:
                n += 1
            names[r] = str(n)
            n += 1
    return names


def _defaults(op_name: str) -> dict[str, Any] | None:
    from mlpc.ops import registry

    try:
        return registry.get(op_name).attrs
    except KeyError:
        return None


def print_graph(g: Graph, show_loc: bool = True, annotate: dict[int, str] | None = None) -> str:
    """Textual IR of `g`; `annotate` maps op indices to a trailing comment (e.g. fused kernel)."""
    names = value_names(g)
    args = []
    for i in g.inputs:
        role = "" if i.role == "data" else f"{i.role} "
        args.append(f"{role}%{i.name}: {i.value.type}")
    rets = [f"{format_output_name(o.name)}: {o.value.type}" for o in g.outputs]
    header = f"func @{g.name}({', '.join(args)}) -> ({', '.join(rets)}) {{"
    if len(header) > 100:  # one argument / result per line
        header = (f"func @{g.name}(\n" + ",\n".join("    " + a for a in args) + "\n) -> (\n"
                  + ",\n".join("    " + r for r in rets) + "\n) {")
    lines = [header]
    for idx, op in enumerate(g.ops):
        lhs = ", ".join(f"%{names[r]}: {r.type}" for r in op.results)
        operands = ", ".join(f"%{names[v]}" if v in names else "%<undefined>" for v in op.operands)
        text = f"  {lhs} = {op.name}"
        if operands:
            text += f" {operands}"
        text += format_attrs(op.attrs, _defaults(op.name))
        if show_loc and op.loc:
            text += f" loc({json.dumps(op.loc)})"
        if annotate and idx in annotate:
            text += f"  // {annotate[idx]}"
        lines.append(text)
    lines.append("  return " + ", ".join(f"%{names.get(o.value, '<undefined>')}" for o in g.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"
