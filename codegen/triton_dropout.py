"""The dropout mask kernel for Triton: tl.philox words, 4 per counter, compared with floor(p 2^32)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codegen.views import View, contiguous
from mlpc.errors import MlpcError
from mlpc.ir import Op
from mlpc.ops.random import keep_scale, threshold

GROUPS_PER_PROGRAM = 256  # 1024 mask elements per program


@dataclass
class DropoutKernel:
    """out[e] = 1/(1-p) if word e % 4 of Philox(e // 4, t, stream, 0; seed) >= floor(p 2^32) else 0."""

    name: str
    t: View
    out: View
    size: int
    p: float
    seed: int
    stream: int


def plan_dropout(planner: Any, op: Op) -> DropoutKernel:
    """Allocate the mask (a [rows, cols] temporary its users read) and describe its kernel."""
    if len(op.operands) != 1:
        raise MlpcError("the triton backend draws dropout masks from position 0 only: a mask keyed by a "
                        "data-parallel rank's global row offset (distributed=) needs the numpy or llvm backend")
    res = op.result
    out = contiguous(planner.new_buffer("t", res.type.size, res.dtype), res.shape, res.dtype)
    planner.views[res] = out
    return DropoutKernel(planner.kname("drop"), planner.view(op.operands[0]), out, res.type.size,
                         float(op.attrs["p"]), int(op.attrs["seed"]), int(op.attrs["stream"]))


def render_dropout(k: DropoutKernel, launch: Any, args: Any) -> Any:
    """`launch` and `args` are triton_render's Launch and _Args (passed in: no import cycle)."""
    tp = args.ptr("t", k.t)
    op = args.ptr("out", k.out)
    args.int("n", k.size)
    thr = threshold(k.p)
    if thr == 0:
        keep = "tl.full(r.shape, 1, tl.int1)"
    elif thr >> 32:
        keep = "tl.full(r.shape, 0, tl.int1)"
    else:
        keep = f"r >= tl.full(r.shape, {thr}, tl.uint32)"
    lines = ["    g = tl.program_id(0) * GROUPS + tl.arange(0, GROUPS)",
             f"    step = tl.load({tp}).to(tl.uint32)",
             "    c0 = g.to(tl.uint32)",
             "    c1 = tl.zeros_like(c0) + step",
             f"    c2 = tl.full(c0.shape, {k.stream}, tl.uint32)",
             "    c3 = tl.zeros_like(c0)",
             f"    r0, r1, r2, r3 = tl.philox({k.seed}, c0, c1, c2, c3)"]
    for j in range(4):
        lines += [f"    r = r{j}",
                  f"    idx = g * 4 + {j}",
                  f"    tl.store({op} + idx, tl.where({keep}, {keep_scale(k.p)!r}, 0.0), mask=idx < n)"]
    src = [f"@triton.jit\ndef {k.name}({args.params()}, GROUPS: tl.constexpr):"] + lines
    groups = -(-k.size // 4)
    return launch(k.name, "\n".join(src) + "\n", args.items, (-(-groups // GROUPS_PER_PROGRAM),),
                  {"GROUPS": GROUPS_PER_PROGRAM}, 4, 1)
