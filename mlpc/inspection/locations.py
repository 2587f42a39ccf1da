"""Source locations re-attached to stage text printed from another graph of the same structure (cache hits)."""

from __future__ import annotations

import re

from mlpc.ir import Graph
from mlpc.printer import print_graph

_LOC = re.compile(r' loc\("(?:[^"\\]|\\.)*"\)')


def reattach_locations(text: str, graph: Graph) -> str:
    """`text` (a stage printed from a graph whose location-free text equals `graph`'s, e.g. a compile-cache
    entry filled by another model file) with every op line's `loc(...)` taken from `graph`.

    Op lines are matched by their location-free text, which is unique (each op defines new SSA names);
    an op of `graph` without a location gets none, and lines that are not op lines are left as they are."""
    located = dict(zip(print_graph(graph, show_loc=False).splitlines(),
                       print_graph(graph, show_loc=True).splitlines()))
    out = []
    for line in text.split("\n"):
        if line.startswith("  %"):
            m = _LOC.search(line)
            if m is not None:
                head, tail = line[:m.start()], line[m.end():]
            else:
                cut = line.find("  // ")
                head, tail = (line[:cut], line[cut:]) if cut >= 0 else (line, "")
            if head in located:
                line = located[head] + tail
            elif m is not None:
                line = head + tail  # no op of this graph prints so: show no location rather than a stale one
        out.append(line)
    return "\n".join(out)
