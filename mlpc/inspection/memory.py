"""Buffer lifetimes for inspection: the memory-planning pass's arena when it exists, else an estimate."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from mlpc.printer import value_names

from .kernels import KernelPlan

ALIGN = 64


@dataclass(frozen=True)
class Buffer:
    """One arena buffer: the value's name and type, its byte range, and the kernels it is live across."""

    name: str
    type: str
    offset: int
    nbytes: int
    first: int
    last: int


@dataclass
class Lifetimes:
    arena_bytes: int
    buffers: list[Buffer]
    steps: int           # number of kernels (the time axis)
    source: str          # where the plan came from


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def lifetimes(kp: KernelPlan) -> Lifetimes:
    """The arena layout of `kp`'s graph from passes.memory when a fusion plan exists, else an estimate."""
    if kp.fusion_plan is not None:
        try:
            from passes.memory import plan_memory  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            plan_memory = None  # type: ignore[assignment, unused-ignore]
        if plan_memory is not None:
            try:
                mp = plan_memory(kp.fusion_plan)
                names = value_names(kp.graph)
                bufs = [Buffer(names.get(v, "?"), str(v.type), s.offset, s.nbytes, *mp.intervals.get(v, (0, 0)))
                        for v, s in mp.slots.items() if s.external is None]
                return Lifetimes(int(mp.arena_bytes), sorted(bufs, key=lambda b: b.offset), len(kp.kernels),
                                 "passes.memory")
            except Exception as e:  # noqa: BLE001 - fall back to the estimate below
                return _estimate(kp, f"estimate; passes.memory failed: {type(e).__name__}: {e}")
    return _estimate(kp, "estimate by greedy first-fit over kernel-boundary values; no memory pass installed")


def _estimate(kp: KernelPlan, source: str) -> Lifetimes:
    """Every value crossing a kernel boundary gets an arena slot for its live range (writer..last reader);
    graph inputs live in caller buffers; slots are reused first-fit, biggest values first."""
    g = kp.graph
    names = value_names(g)
    kernel_of = {i: n for n, k in enumerate(kp.kernels) for i in k.ops}
    inputs = {id(i.value) for i in g.inputs}
    outputs = {id(o.value) for o in g.outputs}
    n = len(kp.kernels)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    vals = {}
    for i, op in enumerate(g.ops):
        k = kernel_of.get(i)
        if k is None:
            continue
        for r in op.results:
            first[id(r)] = k
            last.setdefault(id(r), k)
            vals[id(r)] = r
        for v in op.operands:
            if id(v) in first and first[id(v)] != k:
                last[id(v)] = max(last[id(v)], k)
    crossing = [vid for vid in first if vid not in inputs and (last[vid] != first[vid] or vid in outputs)]
    for vid in crossing:
        if vid in outputs:
            last[vid] = n
    requests = sorted(crossing, key=lambda vid: (-vals[vid].type.nbytes, first[vid]))
    placed: list[tuple[int, int, int, int]] = []
    bufs = []
    for vid in requests:
        lo, hi, size = first[vid], last[vid], _align(vals[vid].type.nbytes)
        off = 0
        for o, s in sorted((o, s) for o, s, a, b in placed if not (b < lo or hi < a)):
            if off + size <= o:
                break
            off = max(off, _align(o + s))
        placed.append((off, size, lo, hi))
        v = vals[vid]
        bufs.append(Buffer(names[v], str(v.type), off, v.type.nbytes, lo, hi))
    arena = _align(max((o + s for o, s, _, _ in placed), default=0))
    return Lifetimes(arena, sorted(bufs, key=lambda b: b.offset), n, source)


_PALETTE = ["#5dade2", "#58d68d", "#f5b041", "#af7ac5", "#ec7063", "#48c9b0", "#f4d03f", "#85929e"]


def lifetimes_svg(lt: Lifetimes, width: int = 760, height: int = 360) -> str:
    """Buffers as rectangles: x = kernels they are live across, y = their bytes in the arena."""
    left, right, top, bottom = 80, 20, 16, 40
    pw, ph = width - left - right, height - top - bottom
    steps = max(lt.steps, 1) + 1
    arena = max(lt.arena_bytes, 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lifetimes" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="buffer lifetimes">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#999"/>']
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = top + ph * (1 - frac)
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                   f'{_kib(arena * frac)}</text>')
    tick = max(1, steps // 12)
    for s in range(0, steps, tick):
        x = left + pw * s / steps
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">k{s}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="12" text-anchor="middle">'
               'kernel (time)</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">arena offset</text>')
    for i, b in enumerate(lt.buffers):
        x = left + pw * b.first / steps
        w = max(pw * (b.last - b.first + 1) / steps, 2)
        y = top + ph * (1 - (b.offset + b.nbytes) / arena)
        h = max(ph * b.nbytes / arena, 1.5)
        out.append(f'<rect class="buffer" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                   f'fill="{_PALETTE[i % len(_PALETTE)]}" fill-opacity="0.8" stroke="#333" stroke-width="0.5">'
                   f'<title>%{escape(b.name)}: {escape(b.type)}, {b.nbytes} bytes at {b.offset}, '
                   f'live k{b.first}..k{b.last}</title></rect>')
    out.append("</svg>")
    return "\n".join(out)


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB" if n < 2 ** 20 else f"{n / 2 ** 20:.1f} MiB"
