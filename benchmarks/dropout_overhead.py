"""Cost of Dropout per training step: 784-256-256-10 ReLU MLP, Adam, llvm, batch 128 and 1024.

The same network with and without `nn.Dropout(p)` after each hidden layer (the two Philox mask kernels,
the x * mask epilogues and the g * mask backward epilogues). Both trainers alternate in rounds inside one
process on the same rotating distinct batches; each reported time is the lowest of the rounds' median
step times (the least disturbed round on a shared machine). PyTorch (CPU, same thread count) is timed the
same way as a peer: its own dropout overhead on the same network.

    python benchmarks/dropout_overhead.py [--quick] [--threads N] [--json PATH]
A --quick run writes JSON only where --json says (never the committed results file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULTS = "benchmarks/results/dropout_overhead.json"
SIZES = (784, 256, 256, 10)


def make_mlpc(batch: int, p: float) -> Callable:
    return make_trainer(batch, p).step


def make_trainer(batch: int, p: float):
    import mlpc
    from mlpc import nn, optim

    layers: list = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers += [nn.ReLU()] + ([nn.Dropout(p)] if p else [])
    return mlpc.compile(nn.Sequential(*layers), nn.CrossEntropyLoss(), optim.Adam(lr=1e-3), batch_size=batch,
                        backend="llvm")


def profiled(batch: int, p: float, repeats: int) -> tuple[float, float]:
    """(median ms of the dropout mask kernels, summed median ms of all kernels) from the llvm backend's
    cycle-counting profile of one step: per-kernel medians, less exposed to other jobs than wall time."""
    from mlpc.inspection.profile import sample_inputs

    tr = make_trainer(batch, p)
    graph = tr.graph("simplified")
    compiled = tr._compiled_for("step", batch)
    inputs = sample_inputs(graph)
    state = {i.name: inputs[i.name] for i in graph.inputs if i.role != "data"}
    data = {i.name: inputs[i.name] for i in graph.inputs if i.role == "data"}
    times = compiled.profile(state, data, repeats)
    masks = [line.split(":")[0].split()[-1] for line in tr.ir("fused").splitlines() if "[dropout_mask]" in line]
    return 1e3 * sum(times[k] for k in masks), 1e3 * sum(times.values())


def make_torch(p: float, threads: int) -> Callable:
    import torch

    torch.set_num_threads(threads)
    tn = torch.nn
    layers: list = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(tn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers += [tn.ReLU()] + ([tn.Dropout(p)] if p else [])
    model = tn.Sequential(*layers).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = tn.CrossEntropyLoss()

    def step(x: np.ndarray, y: np.ndarray) -> float:
        opt.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y).long())
        loss.backward()
        opt.step()
        return loss.item()
    return step


def measure(makers: dict[str, Callable[[], Callable]], batch: int, rounds: int, steps: int) -> dict[str, float]:
    from benchmarks.cpu_step import time_round

    rng = np.random.default_rng(batch)
    xs = [rng.standard_normal((batch, SIZES[0])).astype(np.float32) for _ in range(16)]
    ys = [rng.integers(0, SIZES[-1], batch).astype(np.int32) for _ in range(16)]
    fns = {k: make() for k, make in makers.items()}
    for fn in fns.values():  # warm up
        time_round(fn, xs, ys, 3, 0)
    best = {k: float("inf") for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names if r % 2 == 0 else reversed(names):
            best[k] = min(best[k], time_round(fns[k], xs, ys, steps, r * steps))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    ap.add_argument("--threads", type=int, default=2, help="MLPC_NUM_THREADS and torch's thread count")
    ap.add_argument("--p", type=float, default=0.1, help="dropout probability")
    ap.add_argument("--json", default=None, help=f"where to write the results (default: {RESULTS}, not for --quick)")
    args = ap.parse_args()
    os.environ["MLPC_NUM_THREADS"] = str(args.threads)
    rounds, steps = (3, 10) if args.quick else (5, 20)
    rows = []
    for batch in (128, 1024):
        t = measure({"mlpc": lambda b=batch: make_mlpc(b, 0.0), "mlpc+dropout": lambda b=batch: make_mlpc(b, args.p),
                     "torch": lambda: make_torch(0.0, args.threads),
                     "torch+dropout": lambda: make_torch(args.p, args.threads)}, batch, rounds, steps)
        rows.append({"batch": batch, **{f"{k}_ms": v * 1e3 for k, v in t.items()},
                     "mlpc_overhead_pct": 100 * (t["mlpc+dropout"] / t["mlpc"] - 1),
                     "torch_overhead_pct": 100 * (t["torch+dropout"] / t["torch"] - 1),
                     "mlpc_vs_torch_with_dropout": t["torch+dropout"] / t["mlpc+dropout"]})
        reps = 5 if args.quick else 30
        mask_ms, kernels_ms = profiled(batch, args.p, reps)
        _, plain_ms = profiled(batch, 0.0, reps)
        rows[-1].update({"mask_kernels_ms": mask_ms, "profiled_step_ms": kernels_ms, "profiled_plain_ms": plain_ms,
                         "mask_kernels_pct": 100 * mask_ms / kernels_ms,
                         "profiled_overhead_pct": 100 * (kernels_ms / plain_ms - 1)})
    print(f"784-256-256-10 ReLU, Adam, llvm, {args.threads} threads, Dropout({args.p}) after both hidden layers; "
          f"best of {rounds} rounds' median of {steps} steps")
    head = ("batch", "mlpc ms", "+dropout", "overhead", "torch ms", "+dropout", "overhead")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (5, 8, 9, 9, 9, 9, 9))))
    for r in rows:
        print(f"{r['batch']:>5} {r['mlpc_ms']:8.3f} {r['mlpc+dropout_ms']:9.3f} {r['mlpc_overhead_pct']:8.1f}% "
              f"{r['torch_ms']:9.3f} {r['torch+dropout_ms']:9.3f} {r['torch_overhead_pct']:8.1f}%")
    print("llvm per-kernel profile (thread 0, median per kernel) of the step with dropout:")
    for r in rows:
        print(f"  batch {r['batch']:>4}: mask kernels {r['mask_kernels_ms']:.3f} ms of {r['profiled_step_ms']:.3f} ms "
              f"({r['mask_kernels_pct']:.1f}%); all kernels {r['profiled_plain_ms']:.3f} ms without dropout "
              f"({r['profiled_overhead_pct']:+.1f}%)")
    path = args.json or (None if args.quick else RESULTS)
    if path:
        with open(path, "w") as f:
            json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                       "p": args.p, "rounds": rounds, "steps": steps, "rows": rows,
                       "note": "shared machine: other jobs ran during the measurement"}, f, indent=1)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
