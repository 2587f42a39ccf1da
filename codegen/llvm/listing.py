"""The `llvm` and `asm` stage texts: the optimized module's functions as one section per kernel, in step order.

A kernel that shares another's function (sharing.py) is listed under its own name with a note naming
the function that holds the code, so `dump` and `report` still show every kernel's code by its name.
"""

from __future__ import annotations

import re
from typing import Any

RUNTIME_FUNCTIONS = ("mlpc_body", "mlpc_step", "mlpc_worker", "mlpc_barrier", "mlpc_shutdown")


def listing_layout(kernels: list[Any], header: str) -> dict[str, Any]:
    """What the texts list (JSON, stored in the compile cache's metadata): a header line, then per kernel
    [section title, kernel name, name of the function holding its code]."""
    parts = [[f"kernel {k.name}: {k.detail}{' [threaded]' if k.threaded else ''}", k.name, k.code or k.name]
             for k in kernels]
    return {"header": header, "kernels": parts}


def _renamed(text: str, old: str, new: str) -> str:
    return re.sub(rf"(?<![\w.$]){re.escape(old)}(?![\w.$])", new, text)


def render_listing(funcs: dict[str, str], layout: dict[str, Any], comment: str) -> str:
    """One text from per-function `funcs` (IR or assembly), `comment` being that language's comment mark."""
    out = [f"{comment} {layout['header']}"]
    for title, name, code in layout["kernels"]:
        body = funcs.get(code)
        if body is None:
            body = f"{comment} (inlined)"
        elif code != name:
            body = (f"{comment} the code of {code}: kernels of one signature share a function, only their "
                    f"buffer pointers differ (shown here under this kernel's name)\n{_renamed(body, code, name)}")
        out.append(f"{comment} ---- {title}\n{body}")
        if code == name:  # functions it calls that serve several of its parts (the optimizer's update loops)
            out += [f"{comment} ---- {fn}: called by {name}\n{funcs[fn]}" for fn in funcs if fn.startswith(f"{name}_")]
    for fn in RUNTIME_FUNCTIONS:
        if fn in funcs:
            out.append(f"{comment} ---- {fn}\n{funcs[fn]}")
    return "\n".join(out)
