"""Checks a graph's invariants: names, single assignment, def-before-use, types against op rules."""

from __future__ import annotations

from mlpc.errors import ShapeError, VerifyError
from mlpc.ir import ROLES, Graph, Input, Value
from mlpc.ops import registry
from mlpc.printer import NAME_RE


def _context(g: Graph, index: int, radius: int = 3) -> str:
    from mlpc.printer import print_graph

    lines = print_graph(g).splitlines()
    first = next(i for i, line in enumerate(lines) if line.endswith("{"))
    ops_lines = lines[first + 1:-2]
    lo, hi = max(0, index - radius), min(len(ops_lines), index + radius + 1)
    marked = [("> " if i == index else "  ") + ops_lines[i] for i in range(lo, hi)]
    return "\n".join(marked)


def verify(g: Graph, after: str = "") -> None:
    """Raise VerifyError naming the broken rule, the pass `after` which it broke, and nearby ops."""
    where = f" after pass '{after}'" if after else ""

    def fail(msg: str, index: int | None = None) -> None:
        text = f"IR verification failed{where}: {msg}"
        if index is not None:
            try:
                text += "\n" + _context(g, index)
            except Exception:  # printing a broken graph may fail; the message stands alone then
                pass
        raise VerifyError(text)

    defined: set[Value] = set()
    seen_names: set[str] = set()
    for inp in g.inputs:
        if not NAME_RE.match(inp.name):
            fail(f"input name {inp.name!r} has characters outside [A-Za-z0-9_.]")
        if inp.name in seen_names:
            fail(f"input name %{inp.name} is used twice")
        if inp.role not in ROLES:
            fail(f"input %{inp.name} has unknown role {inp.role!r}")
        if inp.value in defined:
            fail(f"input %{inp.name} reuses another input's value")
        seen_names.add(inp.name)
        defined.add(inp.value)
    for idx, op in enumerate(g.ops):
        try:
            opdef = registry.get(op.name)
        except KeyError:
            fail(f"unknown op {op.name!r}", idx)
            raise
        for k, v in enumerate(op.operands):
            if v not in defined:
                fail(f"operand {k} of {op.name} is used before it is defined (or never defined)", idx)
        try:
            attrs = registry.normalize_attrs(opdef, op.attrs)
            inferred = opdef.infer([v.type for v in op.operands], attrs)
        except ShapeError as e:
            fail(f"{op.name}: {e}", idx)
            raise
        if attrs != op.attrs:
            fail(f"{op.name} carries attributes {op.attrs} that are not normalized ({attrs})", idx)
        declared = [r.type for r in op.results]
        if inferred != declared:
            fail(f"{op.name} declares {[str(t) for t in declared]} but its rule gives "
                 f"{[str(t) for t in inferred]}", idx)
        for r in op.results:
            if r in defined:
                fail(f"a result of {op.name} is assigned twice (not SSA)", idx)
            if r.producer is not op:
                fail(f"a result of {op.name} does not point back to its producer", idx)
            defined.add(r)
    out_names: set[str] = set()
    first_input: dict[str, Input] = {}
    for i in g.inputs:
        first_input.setdefault(i.name, i)  # one lookup per output (a list scan was quadratic in depth)
    for o in g.outputs:
        if o.value not in defined:
            fail(f"output {o.name} returns an undefined value")
        if o.name in out_names:
            fail(f"output name {o.name} is used twice")
        out_names.add(o.name)
        match = first_input.get(o.name)
        if match is not None and match.value.type != o.value.type:
            fail(f"output {o.name} updates input %{o.name} of type {match.value.type} with a {o.value.type}")
