"""Cost of the reliability features: the nan_guard pass per training step, and one checkpoint save.

Step time with and without `nan_guard=True` on every available backend (784-256-10 ReLU MLP, Adam and
SGD-momentum, batch 16 and 128). Guarded and plain trainers alternate in rounds inside one process and
train on the same rotating set of distinct random batches; the reported time is the lowest of the rounds'
median step times. Also: the time of `Trainer.save` (safetensors + checksum + fsync + rename).

    python benchmarks/reliability_overhead.py [--quick] [--json PATH]  (JSON: benchmarks/results/)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mlpc  # noqa: E402
from benchmarks.cpu_step import time_round as median_step  # noqa: E402
from mlpc import nn, optim  # noqa: E402
from mlpc.errors import MlpcError  # noqa: E402
from runtime.backend import available_backends  # noqa: E402


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def make(backend: str, opt: str, batch: int, guard: bool) -> mlpc.Trainer:
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    o = optim.Adam(lr=1e-3) if opt == "adam" else optim.SGD(lr=1e-3, momentum=0.9)
    return mlpc.compile(model, nn.CrossEntropyLoss(), o, batch_size=batch, backend=backend, nan_guard=guard)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    ap.add_argument("--json", default="benchmarks/results/reliability_overhead.json", help="where to write the results")
    args = ap.parse_args()
    rounds, steps = (3, 10) if args.quick else (5, 30)
    rng = np.random.default_rng(0)
    rows = []
    for backend in available_backends():
        if backend.startswith("triton") and not _cuda():
            print(f"skipping {backend}: no CUDA GPU (its interpreter's speed means nothing)")
            continue
        for opt in ("adam", "sgd-momentum"):
            for batch in (16, 128):
                xs = [rng.standard_normal((batch, 784)).astype(np.float32) for _ in range(16)]
                ys = [rng.integers(0, 10, batch).astype(np.int32) for _ in range(16)]
                plain = make(backend, opt, batch, False)
                try:
                    guarded = make(backend, opt, batch, True)
                except MlpcError as e:
                    print(f"{backend}: nan_guard refused ({e})")
                    break
                for tr in (plain, guarded):  # warm up
                    median_step(tr.step, xs, ys, 3, 0)
                best = {"plain": float("inf"), "guarded": float("inf")}
                for r in range(rounds):
                    for name, tr in (("plain", plain), ("guarded", guarded)) if r % 2 == 0 else \
                            (("guarded", guarded), ("plain", plain)):
                        best[name] = min(best[name], median_step(tr.step, xs, ys, steps, r * steps))
                rows.append({"backend": backend, "optimizer": opt, "batch": batch, "plain_ms": best["plain"] * 1e3,
                             "guarded_ms": best["guarded"] * 1e3,
                             "overhead_pct": 100 * (best["guarded"] / best["plain"] - 1)})
    with tempfile.TemporaryDirectory() as d:
        tr = make("numpy", "adam", 128, False)
        path = os.path.join(d, "c.safetensors")
        saves = []
        for _ in range(5 if args.quick else 15):
            t = time.perf_counter()
            tr.save(path)
            saves.append(time.perf_counter() - t)
        save_ms, size = statistics.median(saves) * 1e3, os.path.getsize(path)
    print(f"{'backend':<8} {'optimizer':<13} {'batch':>5} {'plain ms':>9} {'guarded ms':>10} {'overhead':>9}")
    for r in rows:
        print(f"{r['backend']:<8} {r['optimizer']:<13} {r['batch']:>5} {r['plain_ms']:9.3f} {r['guarded_ms']:10.3f} "
              f"{r['overhead_pct']:8.1f}%")
    print(f"checkpoint save (784-256-10 + Adam state, {size / 2**20:.2f} MiB): median {save_ms:.2f} ms")
    with open(args.json, "w") as f:
        json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "steps": rows,
                   "save_ms": save_ms, "save_bytes": size}, f, indent=1)


if __name__ == "__main__":
    main()
