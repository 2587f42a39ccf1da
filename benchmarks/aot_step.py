"""Exported-library benchmark: one training step from C, through ctypes, and through the JIT trainer.

The same model, optimizer and batch size is compiled by the LLVM backend (trainer.step) and exported
with mlpc.export (the same kernels); the library is timed from a C program (benchmarks/aot_step.c,
no Python in the loop) and from Python through mlpc.load_library. Every variant trains on a rotating
set of distinct random batches; variants alternate in rounds and the reported time is the lowest of
the rounds' median step times. Also reports export time and library size.

    python benchmarks/aot_step.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = {"784-100-10": [784, 100, 10], "784-256-256-10": [784, 256, 256, 10]}


def build(sizes: list[int], batch: int, workdir: Path):  # -> (trainer, exported, C binary)
    import mlpc
    from mlpc import nn, optim

    layers: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i + 2 < len(sizes) else [])
    tr = mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=batch,
                      backend="llvm")
    t0 = time.perf_counter()
    ex = mlpc.export(tr, str(workdir), "bench")
    export_s = time.perf_counter() - t0
    exe = workdir / "aot_step"
    cmd = ["cc", "-O2", "-std=c11", f"-I{workdir}", str(ROOT / "benchmarks" / "aot_step.c"), "-o", str(exe),
           f"-L{workdir}", "-lbench", f"-Wl,-rpath,{workdir}", "-lm"]
    subprocess.run(cmd, check=True)
    return tr, ex, exe, export_s


def median_step(step, xs, ys, n: int) -> float:
    ts = []
    for i in range(n):
        t = time.perf_counter()
        step(xs[i % len(xs)], ys[i % len(ys)])
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def main() -> None:
    import mlpc

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "aot_step.json"))
    args = ap.parse_args()
    batches = [1, 128] if args.quick else [1, 16, 128, 1024]
    rounds, steps = (2, 50) if args.quick else (3, 200)
    rng = np.random.default_rng(0)
    results = []
    print(f"{'model':16} {'batch':>5} {'C (us)':>9} {'ctypes (us)':>11} {'JIT (us)':>9} {'export (s)':>10} "
          f"{'lib (KiB)':>9}")
    for mname, sizes in MODELS.items():
        for batch in batches:
            with tempfile.TemporaryDirectory() as tmp:
                tr, ex, exe, export_s = build(sizes, batch, Path(tmp))
                lib = mlpc.load_library(ex.library)
                nb = 32
                xs = [rng.standard_normal((batch, sizes[0])).astype(np.float32) for _ in range(nb)]
                ys = [rng.integers(0, sizes[-1], batch).astype(np.int32) for _ in range(nb)]
                c, ct, jit = [], [], []
                for _ in range(rounds):
                    r = subprocess.run([str(exe), str(steps), str(nb)], capture_output=True, text=True, check=True)
                    c.append(float(r.stdout))
                    ct.append(median_step(lib.step, xs, ys, steps))
                    jit.append(median_step(tr.step, xs, ys, steps))
                row = {"model": mname, "batch": batch, "c_us": min(c), "ctypes_us": min(ct), "jit_us": min(jit),
                       "export_s": export_s, "library_bytes": ex.library.stat().st_size,
                       "threads": ex.spec.target.threads, "cpu": ex.spec.target.cpu}
                results.append(row)
                print(f"{mname:16} {batch:5d} {row['c_us']:9.1f} {row['ctypes_us']:11.1f} {row['jit_us']:9.1f} "
                      f"{export_s:10.2f} {row['library_bytes'] / 1024:9.0f}")
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "rounds": rounds,
            "steps_per_round": steps}
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
