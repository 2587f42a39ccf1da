"""Exported-library benchmark: one training step from C, through ctypes, and through the JIT trainer.

The same model, optimizer and batch size is compiled by the LLVM backend (trainer.step) and exported
with mlpc.export (the same kernels). Columns: "C", a C program calling NAME_train_step in a loop
(benchmarks/aot_step.c, its own process); "raw call", NAME_train_step_n through ctypes with no
Python-side checks; "lib.step", mlpc.load_library's step (validation included); "JIT step",
trainer.step. The last three take turns step by step in one process so machine load hits them
alike. Every variant trains on a rotating set of distinct random batches; the reported time is the
lowest of the rounds' median step times. Also reports export time and library size.

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


def interleaved_medians(steps: dict, xs, ys, n: int) -> dict[str, float]:
    """Median microseconds per step of each variant, the variants taking turns step by step (so the
    load on this shared machine hits them alike)."""
    ts: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(n):
        for name, step in steps.items():
            t = time.perf_counter()
            step(xs[i % len(xs)], ys[i % len(ys)])
            ts[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e6 for k, v in ts.items()}


def raw_call(lib, batch: int):
    """NAME_train_step_n through ctypes with no Python-side checks: the C call plus ~1 us of ctypes."""
    import ctypes

    fn, state, loss = lib._fns["train_step_n"], lib._state, ctypes.c_float()

    def step(x, y):
        if fn(state, batch, x.ctypes.data, y.ctypes.data, ctypes.byref(loss)):
            raise RuntimeError("train_step failed")
    return step


def main() -> None:
    # compile the JIT step with the code in this tree, as the export does (no cached objects that an
    # older codegen of the same version string may have left in the shared cache)
    os.environ["MLPC_CACHE_DIR"] = "off"
    import mlpc

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "aot_step.json"))
    args = ap.parse_args()
    batches = [1, 128] if args.quick else [1, 16, 128, 1024]
    rounds, steps = (2, 50) if args.quick else (3, 200)
    rng = np.random.default_rng(0)
    results = []
    print(f"{'model':16} {'batch':>5} {'C':>9} {'raw call':>9} {'lib.step':>9} {'JIT step':>9} {'export (s)':>10} "
          f"{'lib (KiB)':>9}    (median us per step)")
    for mname, sizes in MODELS.items():
        for batch in batches:
            with tempfile.TemporaryDirectory() as tmp:
                tr, ex, exe, export_s = build(sizes, batch, Path(tmp))
                lib = mlpc.load_library(ex.library)
                nb = 32
                xs = [rng.standard_normal((batch, sizes[0])).astype(np.float32) for _ in range(nb)]
                ys = [rng.integers(0, sizes[-1], batch).astype(np.int32) for _ in range(nb)]
                c: list[float] = []
                inter: dict[str, list[float]] = {"raw": [], "lib": [], "jit": []}
                variants = {"raw": raw_call(lib, batch), "lib": lib.step, "jit": tr.step}
                for _ in range(rounds):
                    r = subprocess.run([str(exe), str(steps), str(nb)], capture_output=True, text=True, check=True)
                    c.append(float(r.stdout))
                    for k, v in interleaved_medians(variants, xs, ys, steps).items():
                        inter[k].append(v)
                row = {"model": mname, "batch": batch, "c_us": min(c), "raw_ctypes_us": min(inter["raw"]),
                       "library_step_us": min(inter["lib"]), "jit_step_us": min(inter["jit"]),
                       "export_s": export_s, "library_bytes": ex.library.stat().st_size,
                       "threads": ex.spec.target.threads, "cpu": ex.spec.target.cpu}
                results.append(row)
                print(f"{mname:16} {batch:5d} {row['c_us']:9.1f} {row['raw_ctypes_us']:9.1f} "
                      f"{row['library_step_us']:9.1f} {row['jit_step_us']:9.1f} {export_s:10.2f} "
                      f"{row['library_bytes'] / 1024:9.0f}")
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "rounds": rounds,
            "steps_per_round": steps}
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
