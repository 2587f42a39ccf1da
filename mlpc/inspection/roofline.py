"""This machine's roofline: peak FLOP/s (NumPy sgemm) and memory bandwidth (large copy), measured once and cached."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from html import escape
from typing import Sequence

import numpy as np

from .kernels import KernelInfo

CACHE_FILE = "roofline.json"


@dataclass(frozen=True)
class Machine:
    """Measured ceilings: `peak_flops` in FLOP/s, `bandwidth` in bytes/s."""

    peak_flops: float
    bandwidth: float
    how: str
    fingerprint: str

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) where the memory roof meets the compute roof."""
        return self.peak_flops / self.bandwidth

    def attainable(self, intensity: float) -> float:
        return min(self.peak_flops, self.bandwidth * intensity)


def cache_dir() -> str:
    """MLPC_CACHE_DIR, else $XDG_CACHE_HOME/mlpc, else ~/.cache/mlpc."""
    if os.environ.get("MLPC_CACHE_DIR"):
        return os.environ["MLPC_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mlpc")


def fingerprint() -> str:
    """What the numbers depend on: host, CPU, core count, NumPy build."""
    return "|".join([platform.node(), platform.machine(), platform.processor() or "?",
                     str(os.cpu_count()), np.__version__])


def measure(n: int = 1024, copy_mib: int = 128, repeats: int = 5) -> Machine:
    """Best of `repeats`: an n^3 float32 matmul for FLOP/s, a copy of `copy_mib` MiB for bytes/s (read + write)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    peak = 2.0 * n ** 3 / best
    src = np.ones(copy_mib * 2 ** 20 // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    bandwidth = 2.0 * src.nbytes / best
    how = f"float32 matmul {n}^3 (NumPy BLAS) and a {copy_mib} MiB copy, best of {repeats}"
    return Machine(peak, bandwidth, how, fingerprint())


def machine(refresh: bool = False) -> Machine:
    """The cached roofline for this machine, measuring it (a second or two) the first time."""
    path = os.path.join(cache_dir(), CACHE_FILE)
    fp = fingerprint()
    if not refresh:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("fingerprint") == fp and data["peak_flops"] > 0 and data["bandwidth"] > 0:
                return Machine(float(data["peak_flops"]), float(data["bandwidth"]), str(data["how"]), fp)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    m = measure()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(m), f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home still gets a roofline, just not a cached one
    return m


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
