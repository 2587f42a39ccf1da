"""Whole-step thread scaling of the llvm backend: one training step compiled for 1, 2, ... threads.

Each model's simplified step graph is lowered with `host_target(threads=n)` for every n in --threads and
run on the same state copy and rotating batches; thread counts alternate within each round, and the table
gives the median over rounds of each round's median step time, with the spread [min-max], and the speedup
over 1 thread. Thread counts above the CPUs this process may use are skipped (they only measure
oversubscription).

    python benchmarks/thread_scaling.py [--quick] [--threads 1 2 4 ...] [--json PATH]
    (JSON: benchmarks/results/thread_scaling.json; --quick writes benchmarks/results/quick/)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mlpc  # noqa: E402
from mlpc import nn, optim  # noqa: E402

CASES = [("784-256-256-10 relu", [784, 256, 256, 10], "relu", 128),
         ("784-256-256-10 relu", [784, 256, 256, 10], "relu", 1024),
         ("784-1024-1024-10 gelu", [784, 1024, 1024, 10], "gelu", 256),
         ("depth20-w256 tanh", [784] + [256] * 19 + [10], "tanh", 256)]


def steps_for(sizes: list[int], act: str, batch: int, counts: list[int]) -> tuple[dict, dict, list]:
    from codegen.llvm.target import host_target
    from mlpc.inspection.profile import sample_inputs
    from runtime.llvm_backend import lower_graph

    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": lambda: nn.GELU(approximate="tanh")}
    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([acts[act]()] if i + 2 < len(sizes) else [])
    tr = mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=batch,
                      backend="numpy")
    g = tr.graph("simplified")
    inputs = sample_inputs(g)
    compiled = {n: lower_graph(g, target=host_target(n)) for n in counts}
    states = {n: {i.name: np.array(inputs[i.name]) for i in g.inputs if i.role != "data"} for n in counts}
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((batch, sizes[0])).astype(np.float32),
             "y": rng.integers(0, sizes[-1], batch).astype(np.int32)} for _ in range(8)]
    return compiled, states, data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds of 5 steps (writes benchmarks/results/quick/)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    counts = [n for n in args.threads if 1 <= n <= cpus]
    rounds, steps = (3, 5) if args.quick else (7, 20)
    path = args.json or os.path.join("benchmarks", "results", "quick" if args.quick else "", "thread_scaling.json")
    print(f"ms per step (Adam), median [min-max] of {rounds} rounds x {steps} steps; {cpus} CPUs usable, "
          f"threads {counts} (skipped: {[n for n in args.threads if n not in counts]})")
    rows = []
    for name, sizes, act, batch in CASES:
        compiled, states, data = steps_for(sizes, act, batch, counts)
        samples: dict[int, list[float]] = {n: [] for n in counts}
        for n in counts:
            compiled[n].run(states[n], data[0])  # warm-up: starts the pool
        for r in range(rounds):
            for n in counts:
                ts = []
                for i in range(steps):
                    t = time.perf_counter()
                    compiled[n].run(states[n], data[(r + i) % len(data)])
                    ts.append(time.perf_counter() - t)
                samples[n].append(statistics.median(ts) * 1e3)
        med = {n: statistics.median(v) for n, v in samples.items()}
        row = {"model": name, "batch": batch, "ms": {n: {"median": med[n], "min": min(v), "max": max(v)}
                                                     for n, v in samples.items()},
               "speedup": {n: med[counts[0]] / med[n] for n in counts}}
        rows.append(row)
        cells = " | ".join(f"{n}T {med[n]:.2f} [{min(samples[n]):.2f}-{max(samples[n]):.2f}] "
                           f"({row['speedup'][n]:.2f}x)" for n in counts)
        print(f"{name:22s} b={batch:<5d} {cells}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"rows": rows, "cpus": cpus, "loadavg": load}, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
