"""This machine's ceilings, measured with mlpc's own LLVM kernels and cached per host: FMA peak (fp32, and bf16
where the CPU has AVX512-BF16), bandwidth per working-set size, and the cycle counter's rate.

How the ceilings are made upper bounds (so a kernel's fraction of them cannot exceed 1 through noise):
- a single-thread rate is the *maximum* over many short runs (a run of a few ms is rarely preempted, and
  noise only ever slows a run down), and a T-thread ceiling is T times it: with turbo and shared caches the
  rate of T busy threads is at most that; the cached FMA peak is raised whenever a later spot check (report,
  stats) measures more, since the clock varies with the other cores' load;
- bandwidth is measured per cache level (a working set of twice the faster levels' capacity, at most half
  of this level's, so it streams past the faster levels and stays in this one) and in DRAM, single-thread,
  as the max of a streaming read, a copy and a triad (bytes counted like mlpc.cost counts them: every byte
  read plus every byte written, once); in L1, where loads and stores use separate ports at once, at least
  the read rate plus the store-only rate, which bounds any mix of them;
- a kernel moving B bytes on T threads (b = B / T each) can find at most the capacity C of the caches faster
  than a level in them, so it needs at least (b - C) / r at that level's rate r: its bandwidth ceiling is T x
  min over levels of r b / (b - C) (Peaks.bandwidth); data left in cache by the kernel before is covered;
- the rate of T threads running at once is measured too (median and spread) and shown, but not used as a roof.
The cache (MLPC_CACHE_DIR, default ~/.cache/mlpc, beside the compile cache) is one JSON file holding a format
version and one entry per host key (host name, CPU model, LLVM CPU name and features, thread count); a file
of another version is ignored with a message and replaced.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

VERSION = 1
CACHE_FILE = "machine_peaks.json"
KiB = 1024


@dataclass(frozen=True)
class Peaks:
    """Measured ceilings. Rates per thread are maxima over repeats; `threads` is the step's thread count."""

    threads: int
    fp32_per_thread: float                      # FLOP/s of one thread (FMA chains)
    bf16_per_thread: float | None               # FLOP/s of one thread (VDPBF16PS chains), None without bf16
    bandwidth_per_thread: list[list[float]]     # [[bytes in faster caches, bytes/s, working set measured]]
    tsc_hz: float                               # llvm.readcyclecounter ticks per second
    together: dict[str, list[float]] = field(default_factory=dict)  # T threads at once: [median, min, max]
    how: str = ""
    host: str = ""

    def compute_peak(self, threads: int | None = None, precision: str = "fp32") -> float:
        """FLOP/s ceiling of `threads` threads (bf16: the VDPBF16PS rate when measured, else the fp32 one)."""
        per = self.bf16_per_thread if precision == "bf16" and self.bf16_per_thread else self.fp32_per_thread
        return per * (threads or self.threads)

    def bandwidth(self, nbytes: float, threads: int | None = None) -> float:
        """Bytes/s ceiling for a kernel moving `nbytes` on `threads` threads: with b = nbytes / threads, at
        most the faster caches' capacity of b can be served by them, so for every level with rate r below
        caches of capacity C, time >= (b - C) / r: the ceiling is min over levels of r * b / (b - C)."""
        t = threads or self.threads
        b = nbytes / t
        best = math.inf
        for above, rate, _size in self.bandwidth_per_thread:
            if b > above:
                best = min(best, rate * b / (b - above))
        return best * t

    def dram_bandwidth(self, threads: int | None = None) -> float:
        return self.bandwidth_per_thread[-1][1] * (threads or self.threads)


def _rate(fn: Any, work: float, repeats: int) -> float:
    from runtime.machine_kernels import timed

    return max(work / timed(fn) for _ in range(repeats))


def _chain_rates(k: Any, threads: int, repeats: int, seconds: float) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per-thread FLOP/s of the fp32 (and bf16) chains, and their rate with `threads` threads at once."""
    import ctypes

    from runtime.machine_kernels import ACCUMULATORS, timed, timed_together

    per: dict[str, float] = {}
    together: dict[str, list[float]] = {}
    kinds = [("fp32", k.fma, ACCUMULATORS * k.lanes * 2)]
    if k.bf16 is not None:
        kinds.append(("bf16", k.bf16, ACCUMULATORS * 16 * 4))  # 16 lanes x 2 products x (mul + add)
    for name, fn, flops_per_iter in kinds:
        bufs = [(ctypes.c_float * 64)(*([1e-3] * 64)) for _ in range(threads)]
        probe = 20_000
        iters = max(probe, int(seconds * probe / max(timed(partial(fn, probe, bufs[0])), 1e-9)))
        per[name] = _rate(partial(fn, iters, bufs[0]), flops_per_iter * iters, repeats)
        calls = [partial(fn, iters, b) for b in bufs]
        rates = [flops_per_iter * iters * threads / timed_together(calls) for _ in range(max(3, repeats // 8))]
        together[name] = [statistics.median(rates), min(rates), max(rates)]
    return per, together


def cache_sizes() -> list[int]:
    """Data-cache capacities in bytes, fastest first (L1d, L2, L3), from sysfs; typical sizes when unknown."""
    sizes: dict[int, int] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(base, entry, "type"), encoding="ascii") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(base, entry, "level"), encoding="ascii") as f:
                level = int(f.read())
            with open(os.path.join(base, entry, "size"), encoding="ascii") as f:
                text = f.read().strip().upper()
            sizes[level] = int(text.rstrip("KMG")) * {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}.get(text[-1:], 1)
    except (OSError, ValueError):
        sizes = {}
    out = [sizes[lv] for lv in sorted(sizes)]
    return out if len(out) >= 2 else [32 * KiB, 1024 * KiB, 32 * 1024 * KiB]


def _stream_rate(k: Any, size: int, repeats: int, seconds: float, l1: bool) -> float:
    """Best bytes/s of one thread streaming a `size`-byte working set: max of read, copy and triad; in L1
    (`l1`), where loads and stores use separate ports at once, at least read + store-only, which bounds any
    mix of loads and stores."""
    from runtime.llvm_backend import aligned_empty
    from runtime.machine_kernels import STREAMS

    vec = k.lanes * 4
    gap = 192  # bytes between one kernel's arrays: no 4 KiB aliasing between its streams
    nvec = max(3 * STREAMS, size // vec // STREAMS * STREAMS)
    buf = aligned_empty(nvec * vec + 2 * gap)
    buf.view("f4")[:] = 1.0
    base = buf.ctypes.data
    reps = max(1, int(seconds * 20e9 / (nvec * vec)))  # about `seconds` at 20 GB/s
    half, third = nvec // 2 // STREAMS * STREAMS, nvec // 3 // STREAMS * STREAMS
    r = _rate(lambda: k.read(base, nvec, reps), nvec * vec * reps, repeats)
    c = _rate(lambda: k.copy(base, base + half * vec + gap, half, reps), 2 * half * vec * reps, repeats)
    t = _rate(lambda: k.triad(base, base + third * vec + gap, base + 2 * (third * vec + gap), third, reps),
              3 * third * vec * reps, repeats)
    best = max(r, c, t)
    if l1:
        best = max(best, r + _rate(lambda: k.fill(base, nvec, reps), nvec * vec * reps, repeats))
    return best


def _bandwidth(k: Any, threads: int, repeats: int, seconds: float) -> tuple[list[list[float]], list[float]]:
    """Levels [[capacity of the faster caches, per-thread bytes/s, working set measured]] and the DRAM copy
    rate of all threads at once [median, min, max]."""
    from runtime.llvm_backend import aligned_empty
    from runtime.machine_kernels import STREAMS, timed_together

    caches = cache_sizes()
    dram = dram_size(caches[-1])
    levels = []
    above = 0
    for n in range(len(caches) + 1):
        # the smallest working set that streams past the faster levels: twice their capacity (within half of
        # this cache: another tenant of a shared cache must not push it out). Any hits left in the faster
        # levels only raise the measured rate, which keeps the ceiling an upper bound.
        size = dram if n == len(caches) else caches[0] // 2 if n == 0 else min(2 * above, caches[n] // 2)
        rate = _stream_rate(k, size, repeats, seconds, n == 0)
        levels.append([float(above), rate, float(size)])
        above += caches[n] if n < len(caches) else 0
    vec = k.lanes * 4
    bufs = [aligned_empty(dram // threads) for _ in range(threads)]
    nvec = dram // threads // vec // 2 // STREAMS * STREAMS
    calls = [(lambda b=b: k.copy(b.ctypes.data, b.ctypes.data + nvec * vec, nvec, 1)) for b in bufs]
    for fn in calls:
        fn()  # first touch
    rates = [2 * nvec * vec * threads / timed_together(calls) for _ in range(3)]
    return levels, [statistics.median(rates), min(rates), max(rates)]


def tsc_rate(read: Any, seconds: float = 0.1) -> float:
    """Ticks per second of the cycle counter `read()` (llvm.readcyclecounter: the TSC on x86) against
    time.perf_counter: each end is the tightest of 20 bracketed reads, so a preemption between the two
    clocks cannot skew it (error about 1 us / `seconds`)."""
    def pair() -> tuple[float, int]:
        best = None
        for _ in range(20):
            a = time.perf_counter()
            c = read()
            b = time.perf_counter()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) / 2, c)
        assert best is not None
        return best[1], best[2]

    t0, c0 = pair()
    time.sleep(seconds)
    t1, c1 = pair()
    return (c1 - c0) / (t1 - t0)


def dram_size(l3: int) -> int:
    """A working set far beyond the last-level cache: 4 x L3 (at least 64 MiB, at most 512 MiB)."""
    return min(max(4 * l3, 64 * 2 ** 20), 512 * 2 ** 20)


def measure(threads: int | None = None, repeats: int = 30, seconds: float = 0.002) -> Peaks:
    """Measure everything (about a second): each single-thread rate is the max over `repeats` runs of about
    `seconds` each."""
    from codegen.llvm.target import host_target
    from runtime.machine_kernels import Kernels

    target = host_target()
    t = threads or target.threads
    k = Kernels(target)
    per, together = _chain_rates(k, t, repeats, seconds)
    levels, dram_together = _bandwidth(k, t, max(5, repeats // 3), seconds)
    together["dram_copy"] = dram_together
    how = (f"mlpc's LLVM kernels on {target.cpu}: {16}-chain {k.lanes}-lane FMA"
           f"{' and VDPBF16PS' if k.has_bf16 else ''} (max of {repeats} runs of ~{seconds * 1e3:g} ms per thread, "
           f"x {t} threads), streaming read/copy/triad in each cache level and {levels[-1][2] / 2 ** 20:.0f} MiB "
           "of DRAM")
    return Peaks(t, per["fp32"], per.get("bf16"), levels, tsc_rate(k.tsc), together, how, host_key(t))


def host_key(threads: int) -> str:
    from codegen.llvm.target import host_target

    target = host_target()
    return "|".join([platform.node(), _cpu_model(), target.cpu, target.features, f"threads={threads}"])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_path() -> str | None:
    from runtime.compile_cache import cache_dir

    d = cache_dir()
    return None if d is None else os.path.join(d, CACHE_FILE)


def _read_cache(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("hosts"), dict):
        got = data.get("version") if isinstance(data, dict) else None
        print(f"mlpc: ignoring {path}: machine-peaks format version {got!r}, this mlpc reads version {VERSION}; "
              "measuring again", file=sys.stderr)
        return {}
    return data["hosts"]


def _from_json(entry: Any) -> Peaks | None:
    try:
        p = Peaks(**entry)
        ok = p.fp32_per_thread > 0 and p.tsc_hz > 0 and p.threads > 0 and len(p.bandwidth_per_thread) > 0
        return p if ok else None
    except (TypeError, ValueError):
        return None


def peaks(threads: int | None = None, refresh: bool = False, spot_check: bool = False) -> Peaks:
    """This host's ceilings for `threads` (default: the llvm step's thread count), from the cache or measured.

    `spot_check=True` (what report and stats use) also reruns the single-thread FMA chains briefly and keeps
    the higher rate: the clock (turbo) depends on the other cores' load, so the cached peak is the maximum
    over every measurement on this host, and the kernels timed next run under the conditions just sampled."""
    from codegen.llvm.target import host_target

    t = threads or host_target().threads
    key = host_key(t)
    path = cache_path()
    hosts = _read_cache(path) if path and os.path.exists(path) else {}
    cached = None if refresh else _from_json(hosts.get(key))
    if cached is None:
        p = measure(t)
    elif spot_check:
        p = _spot_check(cached)
        if p == cached:
            return cached
    else:
        return cached
    if path is not None:
        hosts[key] = asdict(p)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"version": VERSION, "hosts": hosts}, f, indent=1)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache folder still gets the numbers, just not cached
    return p


def _spot_check(p: Peaks, repeats: int = 15, seconds: float = 0.002) -> Peaks:
    """`p` with its per-thread FMA rates raised to a fresh measurement's where that is higher."""
    from dataclasses import replace

    from codegen.llvm.target import host_target
    from runtime.machine_kernels import Kernels

    per, _together = _chain_rates(Kernels(host_target()), 1, repeats, seconds)
    fp32 = max(p.fp32_per_thread, per["fp32"])
    bf16 = max(p.bf16_per_thread, per["bf16"]) if p.bf16_per_thread and "bf16" in per else p.bf16_per_thread
    return replace(p, fp32_per_thread=fp32, bf16_per_thread=bf16)
