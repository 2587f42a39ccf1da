"""This machine's roofline: the compute and bandwidth ceilings from runtime/machine_peaks.py (mlpc's own LLVM
kernels, cached per host) and every kernel's fraction of them."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, Sequence

from .kernels import KernelInfo

if TYPE_CHECKING:
    from runtime.machine_peaks import Peaks


@dataclass(frozen=True)
class Fractions:
    """A kernel's achieved rates as fractions of its ceilings: `compute` of the FLOP/s peak, `memory` of the
    bandwidth ceiling for its bytes, `roof` of min(peak, intensity x bandwidth) (= the larger of the two)."""

    compute: float
    memory: float

    @property
    def roof(self) -> float:
        return max(self.compute, self.memory)

    @property
    def bound(self) -> str:
        return "compute" if self.compute >= self.memory else "memory"


@dataclass(frozen=True)
class Machine:
    """The ceilings for a step on `threads` threads at `precision` (see runtime/machine_peaks.py)."""

    peaks: Peaks
    threads: int
    precision: str = "fp32"

    @property
    def peak_flops(self) -> float:
        return self.peaks.compute_peak(self.threads, self.precision)

    @property
    def bandwidth(self) -> float:
        """The DRAM bandwidth ceiling (bytes/s) of `threads` threads: the roofline's slanted roof."""
        return self.peaks.dram_bandwidth(self.threads)

    @property
    def how(self) -> str:
        return f"{self.peaks.how}; {self.threads} thread(s), {self.precision}"

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) where the DRAM roof meets the compute roof."""
        return self.peak_flops / self.bandwidth

    def attainable(self, intensity: float, nbytes: float | None = None) -> float:
        """min(peak, intensity x bandwidth), the bandwidth for `nbytes` moved (DRAM when not given)."""
        bw = self.bandwidth if nbytes is None else self.peaks.bandwidth(nbytes, self.threads)
        return min(self.peak_flops, bw * intensity)

    def fractions(self, k: KernelInfo) -> Fractions | None:
        """The kernel's fractions of its ceilings, None when it was not timed or does nothing."""
        if k.seconds is None or k.seconds <= 0 or (k.cost.flops <= 0 and k.cost.bytes <= 0):
            return None
        compute = k.cost.flops / k.seconds / self.peak_flops
        memory = k.cost.bytes / k.seconds / self.peaks.bandwidth(k.cost.bytes, self.threads)
        return Fractions(compute, memory)


def machine(refresh: bool = False, threads: int | None = None, precision: str = "fp32",
            spot_check: bool = False) -> Machine:
    """The roofline for `threads` threads (default: the llvm step's), measured once per host and cached
    (`spot_check`: re-sample the FMA peak now, see runtime.machine_peaks.peaks)."""
    from runtime.machine_peaks import peaks

    p = peaks(threads, refresh, spot_check)
    return Machine(p, p.threads, precision)


def step_threads(compiled: Any) -> int:
    """Threads a compiled step runs on: the llvm step's own count, else every CPU this process may use
    (NumPy's BLAS and other backends use them all)."""
    meta = getattr(compiled, "meta", None)
    if isinstance(meta, dict) and isinstance(meta.get("threads"), int):
        return int(meta["threads"])
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def kernel_table(m: Machine, kernels: Sequence[KernelInfo]) -> str:
    """Text table: each timed kernel's time and its fractions of the compute peak, bandwidth and roof."""
    lines = [f"{'kernel':<28} {'us':>9} {'GFLOP/s':>9} {'GB/s':>8} {'%peak':>6} {'%bw':>6} {'%roof':>6}  bound"]
    for k in kernels:
        f = m.fractions(k)
        if f is None or k.seconds is None:
            continue
        lines.append(f"{k.name[:28]:<28} {k.seconds * 1e6:9.2f} {k.cost.flops / k.seconds / 1e9:9.2f} "
                     f"{k.cost.bytes / k.seconds / 1e9:8.2f} {100 * f.compute:6.1f} {100 * f.memory:6.1f} "
                     f"{100 * f.roof:6.1f}  {f.bound}")
    return "\n".join(lines) + "\n"


def format_rate(x: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def roofline_svg(m: Machine, kernels: Sequence[KernelInfo], width: int = 720, height: int = 420) -> str:
    """An inline SVG: log-log roofline with one dot per timed kernel that does floating-point work."""
    pts = [(k.cost.intensity, k.achieved_flops, k) for k in kernels
           if k.cost.flops > 0 and k.cost.bytes > 0 and k.achieved_flops]
    xs = [p[0] for p in pts] + [m.ridge]
    ys = [p[1] for p in pts if p[1]] + [m.peak_flops]
    x_lo = 10 ** math.floor(math.log10(min(xs) / 2))
    x_hi = 10 ** math.ceil(math.log10(max(xs) * 2))
    y_hi = 10 ** math.ceil(math.log10(max(ys) * 1.5))
    y_lo = 10 ** math.floor(math.log10(min(min(ys), m.bandwidth * x_lo) / 2))
    left, right, top, bottom = 70, 20, 20, 50
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * (math.log10(x) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))

    def sy(y: float) -> float:
        return top + ph * (1 - (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="roofline" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="roofline">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#999"/>']
    for e in range(int(math.log10(x_lo)), int(math.log10(x_hi)) + 1):
        x = sx(10.0 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">1e{e}</text>')
    for e in range(int(math.log10(y_lo)), int(math.log10(y_hi)) + 1):
        y = sy(10.0 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">1e{e}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 10}" font-size="12" text-anchor="middle">'
               'arithmetic intensity (FLOP/byte)</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">FLOP/s</text>')
    # roofs: memory slope up to the ridge, flat compute roof after it
    x0 = max(x_lo, y_lo / m.bandwidth)
    out.append(f'<polyline class="roof" fill="none" stroke="#c0392b" stroke-width="2" points="'
               f'{sx(x0):.1f},{sy(m.bandwidth * x0):.1f} {sx(m.ridge):.1f},{sy(m.peak_flops):.1f} '
               f'{sx(x_hi):.1f},{sy(m.peak_flops):.1f}"/>')
    for _above, rate, size in m.peaks.bandwidth_per_thread[:-1]:  # cache levels: dashed roofs above DRAM's
        bw = rate * m.threads
        xa, xb = max(x_lo, y_lo / bw), min(x_hi, m.peak_flops / bw)
        if xb > xa:
            out.append(f'<polyline class="cache-roof" fill="none" stroke="#e59866" stroke-dasharray="4 3" points="'
                       f'{sx(xa):.1f},{sy(bw * xa):.1f} {sx(xb):.1f},{sy(bw * xb):.1f}">'
                       f'<title>cache level (measured with '
                       f'{size / 1024:.0f} KiB per thread): {escape(format_rate(bw, "B/s"))}</title></polyline>')
    out.append(f'<text x="{sx(x_hi) - 4:.1f}" y="{sy(m.peak_flops) - 6:.1f}" font-size="11" text-anchor="end" '
               f'fill="#c0392b">peak {escape(format_rate(m.peak_flops, "FLOP/s"))}</text>')
    out.append(f'<text x="{sx(x0) + 6:.1f}" y="{sy(m.bandwidth * x0) - 6:.1f}" font-size="11" fill="#c0392b">'
               f'{escape(format_rate(m.bandwidth, "B/s"))}</text>')
    for ai, achieved, k in pts:
        assert achieved is not None
        color = "#2471a3" if ai >= m.ridge else "#17a589"
        out.append(f'<circle class="kernel-point" cx="{sx(ai):.1f}" cy="{sy(achieved):.1f}" r="5" fill="{color}" '
                   f'fill-opacity="0.75"><title>{escape(k.name)}: {ai:.3g} FLOP/B, '
                   f'{escape(format_rate(achieved, "FLOP/s"))}</title></circle>')
        out.append(f'<text x="{sx(ai) + 7:.1f}" y="{sy(achieved) + 4:.1f}" font-size="10" fill="#555">'
                   f'{escape(k.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
