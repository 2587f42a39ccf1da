"""Peak float32 FMA throughput of this machine: independent vector FMA chains on 1..N threads (GFLOP/s).

The kernel is runtime/machine_kernels.py's (the one `mlpc report` measures its roofline with): 16
independent accumulators of the host's widest f32 vector (16 lanes with AVX-512, 8 with AVX2), each
updated by `llvm.fma` once per iteration, so nothing but FMA throughput limits it. Each thread count
is timed `--repeats` times; the table gives the median with the spread [min-max]. A loaded machine
measures less than its peak: the load average is printed with the result.

    python benchmarks/fma_peak.py [--threads 1 2] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.machine_kernels import ACCUMULATORS, Kernels, timed_together  # noqa: E402


def compile_kernel():  # -> (ctypes function, kernels, lanes)
    from codegen.llvm.target import host_target

    k = Kernels(host_target())
    return k.fma, k, k.lanes


def run_threads(fn, lanes: int, threads: int, iters: int) -> float:
    """Seconds for `threads` threads to run `iters` iterations each, all started together."""
    bufs = [(ctypes.c_float * (2 * lanes))(*([1e-3] * (2 * lanes))) for _ in range(threads)]
    # ctypes releases the GIL for each call
    return timed_together([functools.partial(fn, iters, ctypes.addressof(buf)) for buf in bufs])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5, help="target length of one timed run")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    fn, _engine, lanes = compile_kernel()
    flops_per_iter = ACCUMULATORS * lanes * 2
    probe = 1_000_000
    per_iter = run_threads(fn, lanes, 1, probe) / probe
    iters = max(probe, int(args.seconds / per_iter))
    rows = []
    print(f"f32 FMA peak, {lanes} lanes x {ACCUMULATORS} chains, median [min-max] of {args.repeats} runs:")
    for n in args.threads:
        rates = [flops_per_iter * iters * n / run_threads(fn, lanes, n, iters) / 1e9 for _ in range(args.repeats)]
        row = {"threads": n, "gflops_median": statistics.median(rates), "gflops_min": min(rates),
               "gflops_max": max(rates)}
        rows.append(row)
        print(f"  {n} thread(s): {row['gflops_median']:7.1f} GFLOP/s [{row['gflops_min']:.1f}-"
              f"{row['gflops_max']:.1f}]")
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lanes": lanes, "accumulators": ACCUMULATORS, "rows": rows, "loadavg": load}, f, indent=1)


if __name__ == "__main__":
    main()
