"""Host overhead per training step: a 2-2-2 ReLU net at batch 1, where the native work is negligible.

Times `Trainer.step(x, y)` and the raw compiled step (`compiled.run(state, data)`) on the numpy and llvm
backends, plus the pieces of `Trainer.step` on the llvm backend (input checks, the bare native call). Each
number is the median over `--rounds` rounds of the mean of `--steps` calls, with the spread [min-max] of
the rounds; the same x and y arrays are passed every step (a training loop over fresh batches also pays
one pointer lookup per array, `arr.ctypes.data`, about 0.3 us).

    python benchmarks/host_overhead.py [--quick] [--json PATH]  (JSON: benchmarks/results/host_overhead.json;
    --quick writes benchmarks/results/quick/host_overhead.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mlpc  # noqa: E402
from mlpc import nn, optim, validate  # noqa: E402


def per_call(fn: Callable[[], Any], rounds: int, steps: int) -> dict[str, float]:
    """Median, min and max over rounds of the mean microseconds per call (after one warm-up round)."""
    for _ in range(steps):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        samples.append((time.perf_counter() - start) / steps * 1e6)
    return {"us_median": statistics.median(samples), "us_min": min(samples), "us_max": max(samples),
            "rounds": rounds, "steps": steps}


def cases(backend: str) -> dict[str, Callable[[], Any]]:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    tr = mlpc.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=1e-3), batch_size=1, backend=backend)
    x = np.ones((1, 2), np.float32)
    y = np.zeros(1, np.int32)
    tr.step(x, y)
    compiled = tr._compiled_for("step", 1)
    data = {"x": x, "y": y}
    out: dict[str, Callable[[], Any]] = {
        "Trainer.step": lambda: tr.step(x, y),
        "raw compiled step": lambda: compiled.run(tr._state, data),
    }
    if backend == "llvm":
        target = tr.loss.target_type(1, 2)
        out["  check x (validate.features)"] = lambda: validate.features(x, 2, 1)
        out["  check y (validate.targets)"] = lambda: validate.targets(y, target, 2, 1, True)
        out["  native call only (mlpc_step)"] = lambda: compiled.fn(compiled.ptrs)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (writes under benchmarks/results/quick/)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--json", default=None, help="where to write the results")
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 21)
    steps = args.steps or (2000 if args.quick else 20000)
    path = args.json or ("benchmarks/results/quick/host_overhead.json" if args.quick
                         else "benchmarks/results/host_overhead.json")
    rows = []
    print(f"host overhead, 2-2-2 ReLU net, batch 1, SGD: mean us per call, median [min-max] of {rounds} rounds "
          f"x {steps} calls")
    print(f"{'backend':<8} {'what':<32} {'us':>8}  spread")
    for backend in ("numpy", "llvm"):
        for what, fn in cases(backend).items():
            r = per_call(fn, rounds, steps if backend == "llvm" else max(steps // 20, 10))
            rows.append({"backend": backend, "what": what.strip(), **r})
            print(f"{backend:<8} {what:<32} {r['us_median']:8.2f}  [{r['us_min']:.2f}-{r['us_max']:.2f}]")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} on {os.cpu_count()} CPUs; target: <= 5 us per llvm step")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"rows": rows, "loadavg": load, "python": platform.python_version(),
                   "numpy": np.__version__}, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
